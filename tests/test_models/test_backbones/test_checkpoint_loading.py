"""load_checkpoint_weights_only: checkpoints load with the weights-only unpickler."""

import pickle

import numpy as np
import pytest
import torch
from mmseg.registry import MODELS

from acr_plugin.models.backbones.checkpoint_loading import (
    load_checkpoint_weights_only,
)


# ------------------------------------------------------ safe checkpoints
class _Payload:
    """An arbitrary class: unpickling it could run code."""


def test_checkpoints_load_weights_only(tmp_path):
    state = {'backbone.vit.cls_token': torch.randn(1, 1, 4)}
    plain = tmp_path / 'plain.pth'
    torch.save(dict(state_dict=state, meta=dict(iter=3, seed=0)), plain)
    loaded = load_checkpoint_weights_only(str(plain))
    assert torch.equal(
        loaded['state_dict']['backbone.vit.cls_token'], state['backbone.vit.cls_token']
    )
    # numpy values in meta (mmengine runner checkpoints) are allow-listed
    with_numpy = tmp_path / 'numpy.pth'
    torch.save(dict(state_dict=state, meta=dict(eta=np.float64(1.5))), with_numpy)
    assert load_checkpoint_weights_only(str(with_numpy))['meta']['eta'] == 1.5
    # runner checkpoints saved before WeightsOnlyCheckpointHook name
    # OneCycleLR's annealing function: allowed, it builds nothing
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

    legacy = tmp_path / 'legacy.pth'
    anneal = OneCycleParamScheduler._annealing_cos
    torch.save(dict(state_dict=state, param_schedulers=[dict(f=anneal)]), legacy)
    assert load_checkpoint_weights_only(str(legacy))['param_schedulers'][0]['f'] is (
        anneal
    )
    # an arbitrary object is refused, naming the file and the type
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=state, payload=_Payload()), evil)
    with pytest.raises(pickle.UnpicklingError, match=r'evil\.pth .*_Payload'):
        load_checkpoint_weights_only(str(evil))
    with pytest.raises(FileNotFoundError, match=r'absent\.pth'):
        load_checkpoint_weights_only(str(tmp_path / 'absent.pth'))


def test_safetensors_and_timm_vit_use_the_safe_loader(tmp_path):
    from safetensors.torch import save_file

    backbone = MODELS.build(
        dict(
            type='TimmViT',
            model_name='vit_tiny_patch16_224',
            img_size=32,
            model_kwargs=dict(patch_size=8, embed_dim=24, depth=1, num_heads=2),
        )
    )
    weights = {k: torch.randn_like(v) for k, v in backbone.vit.state_dict().items()}
    path = tmp_path / 'vit.safetensors'
    save_file(weights, str(path))
    assert set(load_checkpoint_weights_only(str(path))) == set(weights)
    report = backbone.load_pretrained(str(path))
    assert not report['missing']
    torch.testing.assert_close(backbone.vit.cls_token, weights['cls_token'])
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=weights, payload=_Payload()), evil)
    with pytest.raises(pickle.UnpicklingError, match=r'evil\.pth'):
        backbone.load_pretrained(str(evil))

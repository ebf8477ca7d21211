"""ACR wrapper: adds all-pairs consistency to any mmseg WSSS segmentor."""

import copy
import logging
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, SampleList
from torch import Tensor

from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.attention.attention_ops import attention_entropy
from acr_plugin.acr.consistency.qk_entropy import qk_attention_entropy
from acr_plugin.acr.views.token_alignment import TokenAlignment
from acr_plugin.acr.views.view_maker import make_view
from acr_plugin.models.host_contract import ACRHost, CAMLossHost, require_members
from acr_plugin.models.segmentors.checkpoint_fit import install_checkpoint_fit
from acr_plugin.structures import VALID_MASK, stack_img_labels, valid_masks

VIEW2_SUFFIX = '_v2'
#: query rows per layer that estimate the entropy diagnostic of (q, k) records
ENTROPY_ROWS = 128


@MODELS.register_module()
class ACRSegmentor(BaseSegmentor):
    """All-pairs consistency regularisation around an unchanged WSSS model.

    For each batch the wrapped ``model`` runs its own ``loss`` twice: on the
    images (view 1) and on a geometrically transformed copy (view 2: flip,
    rescale or crop). The self-attention
    of the chosen layers is captured by hooks during both forwards and the
    ``acr_loss`` (``AllPairsConsistencyLoss``) compares view 1 with view 2
    aligned back to view 1's tokens. The model's architecture, losses and
    prediction are untouched, so a config adopts ACR by inheritance::

        _base_ = ['../vit_cam/vit-cam_....py']
        model = dict(_delete_=True, type='ACRSegmentor',
                     model={{_base_.model}}, acr_loss=dict(...))

    Call graph::

        __init__ -> require_members(model, ACRHost | CAMLossHost)
                 -> predictor.check_model(model)
        loss(inputs, samples)
          |- AttentionCapture(model.captured_vit) as cap
          |    |- model.loss(view1) (or loss_with_cams) -> cap.pop() = attn1
          |    |- make_view(view1, model.patch_size) -> view2, alignment
          |    '- model.loss(view2)                      -> cap.pop() = attn2
          '- acr_loss (AllPairsConsistencyLoss).forward_terms(attn1, attn2,
                 alignment[, cams1, cams2])
        predict(inputs, samples) -> predictor.predict(model, ...) if a
            predictor (e.g. ClsTokenGradCAMHead) is configured, else
            model.predict(...)

    The wrapped model must implement the host contract
    (``acr_plugin.models.host_contract``): ``ACRHost`` (``captured_vit``,
    ``patch_size``, ``num_prefix_tokens``, ``token_grid``, ``align_corners``,
    ``loss``, ``predict``), and ``CAMLossHost`` (``loss_with_cams``) when the
    CAM term is on; it is checked once, here, and a missing member raises a
    ``TypeError`` naming it and the model class.

    Checkpoints of the baseline config load into the wrapped model (its keys
    gain the prefix ``model.``) and this wrapper's into the baseline config;
    a checkpoint that does not fit is refused (see ``checkpoint_fit``).

    Args:
        model (dict): Config of the wrapped segmentor. Its
            ``data_preprocessor`` moves to this wrapper (and wins over the
            wrapper's own ``data_preprocessor``).
        acr_loss (dict, optional): ``AllPairsConsistencyLoss`` config. None
            gives the compute-matched control: two views, the model's own
            losses on both, no consistency term. Defaults to None.
        view (dict): Second view: ``dict(type='flip')`` (the official pair),
            ``dict(type='rescale', scale_range=(0.75, 1.25))`` or
            ``dict(type='crop', max_offset=2)`` (token units). Defaults to
            flip.
        capture (dict): ``AttentionCapture`` options: ``layers`` (None = all)
            and ``mode``: ``'probs'``, ``'qk'`` or None, which follows
            ``acr_loss.capture_mode`` (``'qk'`` for the default efficient
            route: the model keeps its fused attention; ``'probs'`` if the
            attention modules do not support ``'qk'``). Defaults to all
            layers, mode None.
        capture_module (str, optional): Dotted name of a submodule whose
            attention is captured instead of the host's ``captured_vit``.
            Defaults to None (``model.captured_vit``).
        predictor (dict, optional): A head with ``check_model(model)``
            (called once here) and ``predict(model, inputs, data_samples)``,
            e.g. ``ClsTokenGradCAMHead``. Defaults to None (the wrapped model
            predicts).
        data_preprocessor (dict, optional): Used only when ``model`` has no
            ``data_preprocessor`` (mmengine's ``Runner`` sets the file-level
            ``data_preprocessor`` here by default; a differing one is ignored,
            with an INFO log). Defaults to None.
        train_cfg, test_cfg (dict, optional): Unused; mmseg interface.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(
        self,
        model: ConfigType,
        acr_loss: OptConfigType = None,
        view: OptConfigType = None,
        capture: OptConfigType = None,
        capture_module: Optional[str] = None,
        predictor: OptConfigType = None,
        data_preprocessor: OptConfigType = None,
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        model = copy.deepcopy(model)
        super().__init__(
            data_preprocessor=self._pick_preprocessor(
                model.pop('data_preprocessor', None), data_preprocessor
            ),
            init_cfg=init_cfg,
        )
        install_checkpoint_fit(self)
        self.model = MODELS.build(model)
        self.acr_loss = MODELS.build(acr_loss) if acr_loss else None
        self.view_cfg = dict(view or dict(type='flip'))
        self.capture_cfg = dict(layers=None, mode=None)
        self.capture_cfg.update(capture or {})
        self.capture_module = capture_module
        self.predictor = MODELS.build(predictor) if predictor else None
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        # fail at build time, not at the first iteration
        require_members(self.model, ACRHost, 'ACRSegmentor')
        if self.acr_loss is not None and self._needs_cams():
            require_members(
                self.model,
                CAMLossHost,
                'ACRSegmentor (the CAM term, acr_loss.cam_weight > 0)',
            )
        if self.predictor is not None:
            self.predictor.check_model(self.model)
        self.align_corners = self.model.align_corners
        self._capture_target()
        if self.capture_cfg['mode'] is None:
            self.capture_cfg['mode'] = self._auto_capture_mode()

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _pick_preprocessor(inner: OptConfigType, outer: OptConfigType) -> OptConfigType:
        """The wrapped model's ``data_preprocessor`` if it has one, else ours.

        mmengine's ``Runner`` sets the file-level ``data_preprocessor`` as the
        default of the top-level model dict, i.e. of this wrapper: preferring
        it would silently drop what a config sets in
        ``model.model.data_preprocessor``.
        """
        if inner is None:
            return outer
        if outer is not None and outer != inner:
            print_log(
                'ACRSegmentor: using the data_preprocessor of the wrapped model '
                f'(model.model.data_preprocessor = {inner}); the differing '
                'one of the wrapper (model.data_preprocessor, or the file-level '
                f'data_preprocessor that the Runner adds) is ignored: {outer}',
                logger='current',
                level=logging.INFO,
            )
        return inner

    def _capture_target(self) -> torch.nn.Module:
        if self.capture_module is None:
            return self.model.captured_vit
        try:
            return self.model.get_submodule(self.capture_module)
        except AttributeError as err:
            raise AttributeError(
                f'{type(self.model).__name__} has no submodule '
                f'"{self.capture_module}" (ACRSegmentor.capture_module)'
            ) from err

    def _auto_capture_mode(self) -> str:
        """The loss's preferred capture mode, if the attention supports it."""
        mode = getattr(self.acr_loss, 'capture_mode', 'probs')
        if mode == 'qk':
            try:
                AttentionCapture(
                    self._capture_target(), **dict(self.capture_cfg, mode=mode)
                )
            except NotImplementedError as err:
                print_log(
                    f'ACRSegmentor: capturing probabilities instead of (q, k) '
                    f'(the loss then uses the naive route): {err}',
                    logger='current',
                    level=logging.WARNING,
                )
                mode = 'probs'
            except (ValueError, IndexError):
                pass  # a bad capture target or layer: loss() reports it
        return mode

    def _needs_cams(self) -> bool:
        return getattr(self.acr_loss, 'cam_weight', 0.0) > 0

    @property
    def patch_size(self) -> int:
        """Pixels per token of the wrapped model (its host contract)."""
        return self.model.patch_size

    def second_view_batch(
        self, inputs: Tensor, data_samples: SampleList
    ) -> Tuple[Tensor, TokenAlignment, SampleList]:
        """View 2, its alignment and its data samples.

        The samples are shallow copies of view 1's with a ``valid_mask``
        (``PixelData`` ``(1, H2, W2)`` bool): the batch-padding mask of view 1
        (``img_shape`` inside the padded batch) moved by the same geometric
        transform, so that a model ignoring the padding (``ToCo``) still finds
        it after a flip, rescale or crop.
        """
        valid = valid_masks(data_samples, inputs.shape[-2:], inputs.device)
        stacked = torch.cat([inputs, valid[:, None].to(inputs.dtype)], dim=1)
        view2, alignment = make_view(stacked, self.view_cfg, self.patch_size)
        view2, valid2 = view2[:, :-1], view2[:, -1] > 0.5
        samples2 = []
        for sample, mask in zip(data_samples, valid2):
            copy_ = sample.clone()
            copy_.set_data({VALID_MASK: PixelData(data=mask[None])})
            samples2.append(copy_)
        return view2, alignment, samples2

    def _model_loss(
        self, inputs: Tensor, data_samples: SampleList, with_cams: bool
    ) -> Tuple[dict, Optional[Tensor]]:
        if with_cams:
            return self.model.loss_with_cams(inputs, data_samples)
        return self.model.loss(inputs, data_samples), None

    # ------------------------------------------------------------ training
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """The model's losses on both views plus the ACR terms."""
        with_cams = self.acr_loss is not None and self._needs_cams()
        if self.acr_loss is None:
            losses1, _ = self._model_loss(inputs, data_samples, False)
            view2, _, samples2 = self.second_view_batch(inputs, data_samples)
            losses2, _ = self._model_loss(view2, samples2, False)
            return self._merge(losses1, losses2, {})

        with AttentionCapture(self._capture_target(), **self.capture_cfg) as capture:
            losses1, cams1 = self._model_loss(inputs, data_samples, with_cams)
            attn1 = self._main_forward_records(capture)
            view2, alignment, samples2 = self.second_view_batch(inputs, data_samples)
            losses2, cams2 = self._model_loss(view2, samples2, with_cams)
            attn2 = self._main_forward_records(capture)
        if with_cams:
            # only the classes present compete (absent maps are noise that a
            # per-class max normalisation would blow up)
            labels = stack_img_labels(data_samples).to(inputs.device)
            mask = labels[:, :, None, None].to(cams1.dtype)
            cams1, cams2 = cams1 * mask, cams2 * mask
        terms = self.acr_loss.forward_terms(attn1, attn2, alignment, cams1, cams2)
        terms.update(self._diagnostics(attn1))
        return self._merge(losses1, losses2, terms)

    def _main_forward_records(self, capture: AttentionCapture) -> list:
        """Attention of the first backbone forward of a ``model.loss`` call.

        Models such as ToCo run the backbone again on extra crops inside
        their loss; the first forward is always the view itself.
        """
        forwards = capture.pop_all()
        if not forwards:
            raise RuntimeError(
                f'{type(self.model).__name__}.loss() never ran '
                f'"{self.capture_module or "captured_vit"}": no attention was '
                'captured'
            )
        return forwards[0]

    def _merge(self, losses1: dict, losses2: dict, terms: dict) -> dict:
        losses = dict(losses1)
        for name, value in losses2.items():
            losses[name + VIEW2_SUFFIX] = value
        losses.update(terms)
        return losses

    @staticmethod
    def _diagnostics(attn: list) -> Dict[str, Tensor]:
        """Detached per-batch attention entropy (no 'loss' in the key).

        From ``(q, k)`` records it is estimated on ``ENTROPY_ROWS`` evenly
        spaced query rows per layer (exact for shorter sequences), so that
        the diagnostic never materialises a whole attention map.
        """
        with torch.no_grad():
            ent = torch.stack(
                [
                    qk_attention_entropy(*a, max_rows=ENTROPY_ROWS).mean()
                    if isinstance(a, tuple)
                    else attention_entropy(a).mean()
                    for a in attn
                ]
            )
        return dict(acr_attn_entropy=ent.mean())

    # ------------------------------------------------------------ inference
    def extract_feat(self, inputs: Tensor):
        return self.model.extract_feat(inputs)

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]):
        return self.model.encode_decode(inputs, batch_img_metas)

    def predict(
        self, inputs: Tensor, data_samples: Optional[SampleList] = None
    ) -> SampleList:
        if self.predictor is not None:
            return self.predictor.predict(self.model, inputs, data_samples)
        return self.model.predict(inputs, data_samples)

    def _forward(self, inputs: Tensor, data_samples: Optional[SampleList] = None):
        return self.model._forward(inputs, data_samples)

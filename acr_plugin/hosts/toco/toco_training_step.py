"""``ToCoTrainingStep``: one training iteration of ToCo (its losses) and the
loss-weight schedule that ``TrainPhaseHook`` switches.

Mixed into :class:`~acr_plugin.hosts.toco.toco.ToCo`, whose constructor
builds the modules read here (classifiers, ``loss_*``, ``ctc_head``, ``par``,
``decode_head``) and whose :meth:`forward_outputs` / :meth:`multi_scale_cams`
give the tokens and CAMs.
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.utils import SampleList
from torch import Tensor

from acr_plugin.hosts.toco.ctc_views import ctc_global_view, ctc_local_view
from acr_plugin.hosts.toco.toco_ops import (
    refine_cams_with_par,
    roi_map,
    sample_local_crops,
    token_band_labels,
)
from acr_plugin.models.segmentors.wsss_classifier import split_vit_output
from acr_plugin.models.utils.image_norm import denormalize, normalize
from acr_plugin.structures import stack_img_labels, valid_masks


class ToCoTrainingStep:
    """ToCo's losses of one batch and their schedule.

    Call graph::

        loss(inputs, samples) -> loss_with_cams(inputs, samples)[0]
        loss_with_cams(inputs, samples)     (ACRSegmentor.loss, CAM term on)
          |- forward_outputs(inputs)        <- the first backbone forward is
          |                                    always the input view (ACR)
          |- loss_cls / loss_cls_aux on the pooled-token logits
          |- no_grad: multi_scale_cams (final + aux) x labels
          |- loss_ptc(final tokens, token_band_labels(aux CAM))
          |- _ctc_loss -> ctc_head(2 global views + local crops),
          |               ctc_head.forward_teacher(2 global views) -> loss_ctc
          |- _seg_loss(decode_head(tokens), refine_cams_with_par(...))
          '- loss_reg(seg_logits, images, valid, ignore band)
        set_train_phase(loss_weights, seg_label_source) (TrainPhaseHook)
          -> loss_modules()[name].loss_weight

    A loss whose weight is 0 is not computed (and logged as 0).
    """

    # ------------------------------------------------------------ schedule
    def loss_modules(self) -> Dict[str, nn.Module]:
        """Loss modules by ``loss_name`` (the decoder's ``loss_decode`` too)."""
        found = {}
        for module in self.modules():
            if module is self:
                continue
            name = getattr(module, 'loss_name', None)
            if isinstance(name, str) and hasattr(module, 'loss_weight'):
                found[name] = module
        return found

    def set_train_phase(
        self,
        loss_weights: Optional[Dict[str, float]] = None,
        seg_label_source: Optional[str] = None,
    ) -> None:
        """Set loss weights (by loss name) and the pseudo-label source.

        Called by ``TrainPhaseHook``.

        Raises:
            KeyError: For a loss name the model does not have.
            ValueError: For an unknown ``seg_label_source``.
        """
        if seg_label_source is not None:
            if seg_label_source not in ('final', 'aux'):
                raise ValueError(
                    'ToCo: seg_label_source must be "final" or "aux", got '
                    f'"{seg_label_source}"'
                )
            self.seg_label_source = seg_label_source
        if loss_weights:
            modules = self.loss_modules()
            for name, weight in loss_weights.items():
                if name not in modules:
                    raise KeyError(
                        f'ToCo: no loss named "{name}" (loss_weights of the train '
                        f'phase); the model has {sorted(modules)}'
                    )
                modules[name].loss_weight = float(weight)

    # ------------------------------------------------------------ training
    def _weight(self, module: Optional[nn.Module]) -> float:
        return 0.0 if module is None else float(module.loss_weight)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        return self.loss_with_cams(inputs, data_samples)[0]

    def loss_with_cams(
        self, inputs: Tensor, data_samples: SampleList
    ) -> Tuple[dict, Tensor]:
        """All ToCo losses plus the raw final CAMs ``(B, C, h, w)`` of the
        input view's forward (for the ACR CAM-activation term)."""
        labels = stack_img_labels(data_samples).to(inputs.device)
        outputs = self.forward_outputs(inputs)  # first forward: the input view
        losses = {
            self.loss_cls.loss_name: self.loss_cls(outputs['logits'], labels),
            self.loss_cls_aux.loss_name: self.loss_cls_aux(
                outputs['aux_logits'], labels
            ),
        }
        cfg = self.pseudo_cfg
        with torch.no_grad():
            cams, aux_cams = self.multi_scale_cams(
                inputs, cfg['cam_scales'], outputs=outputs
            )
            mask = labels[:, :, None, None].to(cams.dtype)
            cams, aux_cams = cams * mask, aux_cams * mask
        valid = valid_masks(data_samples, inputs.shape[-2:], inputs.device)
        zero = outputs['logits'].sum() * 0.0
        ctc_on = self.ctc_head is not None and self._weight(self.loss_ctc) > 0
        reg_on = self._weight(self.loss_reg) > 0
        # un-normalised [0, 1] images: CTC's views and the dense energy share them
        images01 = None
        if ctc_on or reg_on:
            images01 = denormalize(inputs, self.img_mean, self.img_std)

        if self.loss_ptc is not None:
            if self._weight(self.loss_ptc) > 0:
                token_labels = token_band_labels(
                    aux_cams,
                    outputs['patch_map'].shape[-2:],
                    cfg['high'],
                    cfg['low'],
                    cfg['ignore_index'],
                    valid=valid,
                )
                losses[self.loss_ptc.loss_name] = self.loss_ptc(
                    outputs['patch_map'], token_labels
                )
            else:
                losses[self.loss_ptc.loss_name] = zero

        if self.ctc_head is not None:
            if ctc_on:
                losses[self.loss_ctc.loss_name] = self._ctc_loss(
                    inputs, images01, outputs['prefix'], aux_cams
                )
            else:
                losses[self.loss_ctc.loss_name] = zero

        seg_on = any(m.loss_weight > 0 for m in self._decode_losses())
        if seg_on or reg_on:
            seg_logits = self.decode_head([outputs['patch_map']])
        pseudo = None
        if seg_on:
            source = cams if self.seg_label_source == 'final' else aux_cams
            with torch.no_grad():
                pseudo = refine_cams_with_par(
                    self.par,
                    inputs,
                    source,
                    labels,
                    cfg['high'],
                    cfg['low'],
                    down_scale=cfg['par_scale'],
                    ignore_index=cfg['ignore_index'],
                )
                pseudo[~valid] = cfg['ignore_index']
            losses.update(self._seg_loss(seg_logits, pseudo))
        else:
            for name in self._decode_loss_names():
                losses[name] = zero
        if self.loss_reg is not None:
            if reg_on:
                images = images01 * 255.0
                # the ignore band of the pseudo labels (gate='uncertainty')
                ignore = None if pseudo is None else pseudo == cfg['ignore_index']
                losses[self.loss_reg.loss_name] = self.loss_reg(
                    seg_logits, images, valid, ignore=ignore
                )
            else:
                losses[self.loss_reg.loss_name] = zero
        return losses, outputs['cams']

    def _decode_losses(self) -> List[nn.Module]:
        losses = self.decode_head.loss_decode
        return list(losses) if isinstance(losses, nn.ModuleList) else [losses]

    def _decode_loss_names(self) -> List[str]:
        return [m.loss_name for m in self._decode_losses()]

    def _seg_loss(self, seg_logits: Tensor, pseudo: Tensor) -> Dict[str, Tensor]:
        """The decoder's own ``loss_by_feat`` on the pseudo labels."""
        samples = []
        for label in pseudo:
            sample = SegDataSample()
            sample.gt_sem_seg = PixelData(data=label[None])
            samples.append(sample)
        losses = self.decode_head.loss_by_feat(seg_logits, samples)
        return {
            (k if k.startswith('loss') else f'seg_{k}'): v for k, v in losses.items()
        }

    def _ctc_loss(
        self, inputs: Tensor, images: Tensor, main_prefix: Tensor, aux_cams: Tensor
    ) -> Tensor:
        """Class-token contrast as ToCo: EMA-teacher outputs of the 2 global
        views (the input view and ``ctc_global_view``) against student outputs
        of the same 2 global views (always positive; both with gradients)
        followed by the local crops centred on uncertain regions, cut from an
        independently augmented copy (``ctc_local_view``) of the image
        (``images``: ``inputs`` un-normalised to [0, 1])."""
        cfg = self.ctc_cfg
        batch, size = inputs.shape[0], inputs.shape[-2]
        global2 = normalize(ctc_global_view(images, size), self.img_mean, self.img_std)
        prefix2 = split_vit_output(self.backbone(global2)[self.final_index])[1]
        roi = roi_map(aux_cams, self.pseudo_cfg['low'], self.pseudo_cfg['high'])
        crops, local_positive, _ = sample_local_crops(
            ctc_local_view(images),
            roi,
            num_crops=cfg['num_local'],
            crop_size=cfg['local_size'],
            neg_thr=cfg['neg_thr'],
        )
        crops = normalize(crops.flatten(0, 1), self.img_mean, self.img_std)
        local_prefix = split_vit_output(self.backbone(crops)[self.final_index])[1]
        global_tokens = torch.cat([main_prefix[:, 0], prefix2[:, 0]])  # (2B, D)
        student_global = torch.stack(self.ctc_head(global_tokens).chunk(2), dim=1)
        student_local = self.ctc_head(local_prefix[:, 0]).unflatten(0, (batch, -1))
        student = torch.cat([student_global, student_local], dim=1)  # (B, 2 + L, K)
        positive = torch.cat([local_positive.new_ones(batch, 2), local_positive], 1)
        teacher = self.ctc_head.forward_teacher(global_tokens.detach())
        teacher = torch.stack(teacher.chunk(2), dim=1)  # (B, 2, K)
        return self.loss_ctc(student, teacher, positive)

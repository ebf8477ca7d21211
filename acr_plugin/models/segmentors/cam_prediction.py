"""Training losses and prediction shared by segmentors that classify images
and localise with CAM-like maps (ViTCAM, MCTformer)."""

from typing import Dict, List, Optional, Tuple

from mmseg.utils import SampleList
from torch import Tensor

from acr_plugin.models.utils.cam_ops import (
    cams_to_seg_logits,
    minmax_normalize,
    multi_scale_flip_cams,
)
from acr_plugin.structures import (
    attach_img_logits,
    labels_for_prediction,
    stack_img_labels,
)


class ImageLevelLossMixin:
    """``loss`` / ``loss_by_outputs`` of an image classifier with a token head
    (``token_logits``, ``self.loss_token``) and/or a patch head
    (``patch_logits``, ``self.loss_patch``); ``forward_outputs(inputs)``
    returns those logits."""

    def loss_by_outputs(
        self, outputs: Dict[str, Tensor], labels: Tensor
    ) -> Dict[str, Tensor]:
        """Classification losses of :meth:`forward_outputs` against labels."""
        losses = {}
        if 'token_logits' in outputs:
            losses[self.loss_token.loss_name] = self.loss_token(
                outputs['token_logits'], labels
            )
        if 'patch_logits' in outputs:
            losses[self.loss_patch.loss_name] = self.loss_patch(
                outputs['patch_logits'], labels
            )
        return losses

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Image-level classification losses."""
        labels = stack_img_labels(data_samples).to(inputs.device)
        return self.loss_by_outputs(self.forward_outputs(inputs), labels)


class CAMPredictionMixin:
    """``predict`` / ``encode_decode`` / ``_forward`` from per-class maps.

    The segmentor implements :meth:`cams_and_logits` (raw maps and image
    logits of one forward), :meth:`logits` and ``patch_size`` (the rescale
    divisor), and has a ``test_cfg`` with ``scales``, ``flip``,
    ``flip_merge`` (``'max'`` | ``'sum'``), ``bg_thr``, ``use_labels`` and
    ``eps``: :attr:`test_defaults` holds their defaults (``WSSSClassifier``
    merges ``test_cfg`` into them). Prediction: multi-scale + flip maps at the
    input size, per-class min-max, background plane ``bg_thr`` as channel 0
    (``cams_to_seg_logits``), restricted to the image labels when
    ``use_labels``; the image logits of the plain input are attached as
    ``pred_img_logits``.
    """

    align_corners = False
    test_defaults = {
        'scales': (1.0,),
        'flip': True,
        'flip_merge': 'max',
        'bg_thr': 0.5,
        'use_labels': True,
        'eps': 1e-5,
    }

    def cams_and_logits(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """Raw maps ``(B, C, h, w)`` and image logits ``(B, C)``."""
        raise NotImplementedError

    def tta_cams(self, inputs: Tensor) -> Tensor:
        """Multi-scale + flip maps at input size, min-max normalised."""
        return self._tta_cams_and_logits(inputs)[0]

    def _tta_cams_and_logits(self, inputs: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """:meth:`tta_cams` and the image logits of the plain input.

        The logits are read from the TTA pass's forward at the input size
        (its first ``B`` images are the unflipped input), so prediction needs
        no separate forward; they are None when no scale keeps that size.
        """
        cfg = self.test_cfg
        logits = []

        def cam_fn(batch: Tensor) -> Tensor:
            cams, batch_logits = self.cams_and_logits(batch)
            if not logits and batch.shape[-2:] == inputs.shape[-2:]:
                logits.append(batch_logits[: inputs.shape[0]])
            return cams

        cams = multi_scale_flip_cams(
            cam_fn,
            inputs,
            scales=cfg['scales'],
            flip=cfg['flip'],
            flip_merge=cfg['flip_merge'],
            align_corners=self.align_corners,
            size_divisor=self.patch_size,
        )
        img_logits = logits[0] if logits else None
        return minmax_normalize(cams, cfg['eps']), img_logits

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Seg logits ``(B, C + 1, H, W)`` with every class competing."""
        return cams_to_seg_logits(
            self.tta_cams(inputs), self.test_cfg['bg_thr'], labels=None
        )

    def predict(
        self, inputs: Tensor, data_samples: Optional[SampleList] = None
    ) -> SampleList:
        """Pseudo masks as ``seg_logits`` / ``pred_sem_seg`` and the image
        logits as ``pred_img_logits``."""
        labels = None
        if self.test_cfg['use_labels']:
            labels = labels_for_prediction(
                data_samples, 'test_cfg.', 'model.test_cfg.use_labels=False'
            ).to(inputs.device)
        cams, img_logits = self._tta_cams_and_logits(inputs)
        if img_logits is None:
            img_logits = self.logits(inputs)
        seg_logits = cams_to_seg_logits(cams, self.test_cfg['bg_thr'], labels)
        results = self.postprocess_result(seg_logits, data_samples)
        return attach_img_logits(results, img_logits)

    def _forward(
        self, inputs: Tensor, data_samples: Optional[SampleList] = None
    ) -> Tensor:
        """``mode='tensor'``: image-level logits."""
        return self.logits(inputs)

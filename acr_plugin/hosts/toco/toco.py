"""ToCo-style single-stage WSSS model (Ru et al., CVPR 2023)."""

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, SampleList
from torch import Tensor

from acr_plugin.hosts.toco.par import PixelAdaptiveRefinement
from acr_plugin.hosts.toco.toco_training_step import ToCoTrainingStep
from acr_plugin.models.segmentors.wsss_classifier import (
    WSSSClassifier,
    split_vit_output,
)
from acr_plugin.models.utils.cam_ops import (
    SIZE_ROUNDINGS,
    cams_to_seg_logits,
    minmax_normalize,
    multi_scale_flip_cams,
    rescale_images,
)
from acr_plugin.models.utils.crf import (
    check_crf_cfg,
    crf_refine_predictions,
    images_at_prediction_size,
)
from acr_plugin.structures import attach_img_logits, labels_for_prediction
from acr_plugin.utils.config_utils import merge_with_defaults

#: field of the CAM prediction (``cams_to_seg_logits`` layout) that
#: ``predict`` adds next to the decoder's ``seg_logits``
CAM_SEG_LOGITS = 'cam_seg_logits'

_PSEUDO_DEFAULTS = dict(
    cam_scales=(1.0, 0.5, 1.5),
    cam_rounding='floor',
    high=0.7,
    low=0.25,
    par_scale=0.5,
    ignore_index=255,
    eps=1e-5,
)
_CTC_DEFAULTS = dict(num_local=8, local_size=96, neg_thr=0.2)
_TEST_DEFAULTS = dict(
    output='seg',
    seg_scales=(1.0,),
    seg_flip=True,
    cam_scales=(1.0, 0.5, 1.5),
    cam_flip=True,
    cam_source='final',
    bg_thr=0.5,
    use_labels=True,
    eps=1e-5,
    crf=None,
)


@MODELS.register_module()
class ToCo(ToCoTrainingStep, WSSSClassifier):
    """Token-contrast single-stage WSSS: classifier CAMs, pseudo labels and a
    segmentation decoder trained together.

    Parts (Ru et al., CVPR 2023): bias-free 1x1 classifiers on the global max pool of
    the final tokens (``classifier``) and on an intermediate block's tokens
    (``aux_classifier``); multi-scale + flip CAMs; pseudo labels with an ignore band
    refined by PAR (``par``) for the decoder; patch-token contrast (PTC) of the final
    tokens against the aux CAM's labels at the token grid; class-token contrast (CTC)
    of 2 global views (EMA teacher) against the same 2 views and local crops
    (student) through ``ctc_head``; decoder
    (``decode_head``, e.g. ``LargeFOVHead``) trained with its ``loss_decode`` (ToCo:
    ``BgFgBalancedCELoss``) and an optional dense energy loss (``loss_reg``).

    Every loss is a module with ``loss_name`` / ``loss_weight``; the iteration
    schedule of the weights belongs in ``TrainPhaseHook`` (which calls
    :meth:`set_train_phase`); a loss whose weight is 0 is not computed (and
    logged as 0). The EMA of the CTC teacher is updated by
    ``MomentumTeacherHook``.

    Call graph::

        loss / loss_with_cams (ToCoTrainingStep, toco_training_step.py)
          |- forward_outputs(inputs)       <- the first backbone forward is
          |                                   always the input view (ACR)
          |- no_grad: multi_scale_cams (final + aux) -> normalise, labels
          |- PTC(final tokens, token_band_labels(aux CAM resized to the tokens))
          |- CTC(ctc_head(2 global views + local crops),
          |      ctc_head.teacher(2 global views))
          '- refine_cams_with_par -> decode_head.loss_by_feat (+ loss_reg)
        predict -> cam_seg_logits (cam_scales x flip) in cam_seg_logits,
                   seg_logits_tta (seg_scales x flip) in seg_logits /
                   pred_sem_seg (+ dense CRF)

    The host contract (``captured_vit``, ``patch_size``,
    ``num_prefix_tokens``, ``token_grid``) comes from :class:`WSSSClassifier`.

    Args:
        backbone (dict): ``TimmViT`` with two outputs, e.g.
            ``out_indices=(9, 11), out_norm=(False, True)``.
        num_classes (int): Segmentation classes including background.
        decode_head (dict): mmseg decode head config (``num_classes`` =
            ``num_classes``); it reads the final patch tokens.
        ctc_head (dict, optional): ``CTCProjectionHead``. None disables CTC.
        aux_index (int): Backbone output of the aux classifier. Defaults to 0.
        final_index (int): Backbone output of the final tokens. Defaults
            to -1.
        loss_cls (dict, optional): Final classifier loss. Defaults to
            ``MultiLabelSoftMarginLoss`` (``loss_cls``).
        loss_cls_aux (dict, optional): Aux classifier loss. Defaults to
            ``MultiLabelSoftMarginLoss`` (``loss_cls_aux``).
        loss_ptc (dict, optional): ``PatchTokenContrastLoss``; None disables.
        loss_ctc (dict, optional): ``ClassTokenContrastLoss``; needed with a
            ``ctc_head``.
        loss_reg (dict, optional): ``DenseEnergyLoss``; None disables.
        par (dict, optional): ``PixelAdaptiveRefinement`` arguments.
        pseudo_cfg (dict, optional): ``cam_scales`` ((1.0, 0.5, 1.5)),
            ``cam_rounding`` (``'floor'``: each CAM scale resizes to
            ``int(s * h) x int(s * w)`` px and the patch embedding keeps the
            whole patches, as ToCo; ``'round'``: rounded to whole patches; for
            training and test CAMs), ``high`` (0.7), ``low`` (0.25),
            ``par_scale`` (0.5), ``ignore_index`` (255), ``eps`` (1e-5).
        ctc_cfg (dict, optional): ``num_local`` (8), ``local_size`` (96),
            ``neg_thr`` (0.2).
        img_norm (dict): ``mean`` / ``std`` (0..255, RGB) of the data
            preprocessor, to undo the normalisation for the image
            augmentations of CTC and the dense energy loss.
        seg_label_source (str): ``'final'`` or ``'aux'`` CAM for the decoder's
            pseudo labels (COCO's schedule switches it). Defaults to
            ``'final'``.
        train_cfg (dict, optional): Unused.
        test_cfg (dict, optional): ``output`` (``'seg'``: decoder in
            ``seg_logits``, CAMs in ``cam_seg_logits``; ``'cam'``: CAMs in
            ``seg_logits``, no decoder), ``seg_scales`` ((1.0,)), ``seg_flip``
            (True), ``cam_scales`` ((1.0, 0.5, 1.5)), ``cam_flip`` (True),
            ``cam_source`` (``'final'`` | ``'aux'``), ``bg_thr`` (0.5),
            ``use_labels`` (True), ``eps`` (1e-5), ``crf`` (None: no CRF;
            a dict of ``models.utils.crf.dense_crf`` arguments, ``{}`` for its
            defaults: the decoder's test masks are refined by a dense CRF on
            ``softmax(seg_logits)``, whose log marginals replace ``seg_logits``,
            Ru et al., CVPR 2023; ``output='seg'`` only).
        data_preprocessor (dict, optional): ``SegDataPreProcessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    test_defaults = _TEST_DEFAULTS

    def __init__(
        self,
        backbone: ConfigType,
        num_classes: int,
        decode_head: ConfigType,
        ctc_head: OptConfigType = None,
        aux_index: int = 0,
        final_index: int = -1,
        loss_cls: OptConfigType = None,
        loss_cls_aux: OptConfigType = None,
        loss_ptc: OptConfigType = None,
        loss_ctc: OptConfigType = None,
        loss_reg: OptConfigType = None,
        par: OptConfigType = None,
        pseudo_cfg: OptConfigType = None,
        ctc_cfg: OptConfigType = None,
        img_norm: OptConfigType = None,
        seg_label_source: str = 'final',
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(
            backbone, num_classes, train_cfg, test_cfg, data_preprocessor, init_cfg
        )
        self.aux_index = aux_index
        self.final_index = final_index
        embed_dim = self.embed_dim
        self.classifier = nn.Conv2d(embed_dim, self.num_fg_classes, 1, bias=False)
        self.aux_classifier = nn.Conv2d(embed_dim, self.num_fg_classes, 1, bias=False)

        decode_head = copy.deepcopy(decode_head)
        if decode_head.get('num_classes', num_classes) != num_classes:
            raise ValueError(
                f'ToCo: decode_head.num_classes ({decode_head["num_classes"]}) '
                f'must equal num_classes ({num_classes})'
            )
        decode_head['num_classes'] = num_classes
        self.decode_head = MODELS.build(decode_head)
        self.align_corners = self.decode_head.align_corners
        self.out_channels = self.decode_head.out_channels

        self.loss_cls = MODELS.build(
            loss_cls or dict(type='MultiLabelSoftMarginLoss', loss_name='loss_cls')
        )
        self.loss_cls_aux = MODELS.build(
            loss_cls_aux
            or dict(type='MultiLabelSoftMarginLoss', loss_name='loss_cls_aux')
        )
        self.loss_ptc = MODELS.build(loss_ptc) if loss_ptc else None
        self.loss_reg = MODELS.build(loss_reg) if loss_reg else None
        self.ctc_head = MODELS.build(ctc_head) if ctc_head else None
        self.loss_ctc = MODELS.build(loss_ctc) if loss_ctc else None
        if (self.ctc_head is None) != (self.loss_ctc is None):
            raise ValueError('ToCo: ctc_head and loss_ctc must be set together')
        self.par = PixelAdaptiveRefinement(**(par or {}))
        self.pseudo_cfg = merge_with_defaults(
            _PSEUDO_DEFAULTS, pseudo_cfg, 'ToCo pseudo_cfg'
        )
        if self.pseudo_cfg['cam_rounding'] not in SIZE_ROUNDINGS:
            raise ValueError(
                f'ToCo: pseudo_cfg.cam_rounding must be one of {SIZE_ROUNDINGS}, '
                f'got "{self.pseudo_cfg["cam_rounding"]}"'
            )
        if not 0.0 <= self.pseudo_cfg['low'] < self.pseudo_cfg['high'] <= 1.0:
            raise ValueError(
                'ToCo: pseudo_cfg needs 0 <= low < high <= 1, got '
                f'low={self.pseudo_cfg["low"]} high={self.pseudo_cfg["high"]}'
            )
        self.ctc_cfg = merge_with_defaults(_CTC_DEFAULTS, ctc_cfg, 'ToCo ctc_cfg')
        img_norm = img_norm or dict(
            mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]
        )
        self.img_mean = tuple(float(v) for v in img_norm['mean'])
        self.img_std = tuple(float(v) for v in img_norm['std'])
        self.set_train_phase(seg_label_source=seg_label_source)
        if self.test_cfg['output'] not in ('seg', 'cam'):
            raise ValueError(
                f'ToCo: test_cfg.output must be "seg" or "cam", got '
                f'"{self.test_cfg["output"]}"'
            )
        if self.test_cfg['cam_source'] not in ('final', 'aux'):
            raise ValueError(
                'ToCo: test_cfg.cam_source must be "final" or "aux", got '
                f'"{self.test_cfg["cam_source"]}"'
            )
        self.test_cfg['crf'] = check_crf_cfg(self.test_cfg['crf'], 'ToCo test_cfg.crf')

    @property
    def size_divisor(self) -> int:
        """Rescaled test / pseudo-label inputs are rounded to whole patches."""
        return self.patch_size

    # ------------------------------------------------------------ features
    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """Final patch tokens ``[(B, D, h, w)]`` (the decoder's input)."""
        outs = self.backbone(inputs)
        return [split_vit_output(outs[self.final_index])[0]]

    def forward_outputs(self, inputs: Tensor) -> Dict[str, Tensor]:
        """One backbone forward: tokens, classifier logits and raw CAMs.

        Returns:
            dict: ``patch_map`` / ``aux_map`` (B, D, h, w), ``prefix``
            (B, P, D) of the final output, ``logits`` / ``aux_logits``
            (B, C), ``cams`` / ``aux_cams`` raw (B, C, h, w).
        """
        outs = self.backbone(inputs)
        patch_map, prefix = split_vit_output(outs[self.final_index])
        aux_map, _ = split_vit_output(outs[self.aux_index])
        return dict(
            patch_map=patch_map,
            aux_map=aux_map,
            prefix=prefix,
            cams=self.classifier(patch_map),
            aux_cams=self.aux_classifier(aux_map),
            # classifier AFTER global max pooling of the tokens (ToCo), not a
            # max over the CAM
            logits=self.classifier(F.adaptive_max_pool2d(patch_map, 1)).flatten(1),
            aux_logits=self.aux_classifier(F.adaptive_max_pool2d(aux_map, 1)).flatten(
                1
            ),
        )

    def multi_scale_cams(
        self,
        inputs: Tensor,
        scales: Sequence[float],
        flip: bool = True,
        eps: Optional[float] = None,
        outputs: Optional[Dict[str, Tensor]] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Normalised final and aux CAMs ``(B, C, H, W)`` (scales x flip:
        max over the flip pair, ReLU, sum over scales, per-class min-max).

        ``outputs``: :meth:`forward_outputs` of ``inputs`` if already run
        (the training forward); its raw CAMs serve the scale that keeps the
        input size, so only the mirrored input is run there (the backbone
        treats samples independently: the same CAMs, one forward less).
        """
        return self._multi_scale_cams_and_logits(inputs, scales, flip, eps, outputs)[:2]

    def _multi_scale_cams_and_logits(
        self,
        inputs: Tensor,
        scales: Sequence[float],
        flip: bool,
        eps: Optional[float],
        outputs: Optional[Dict[str, Tensor]],
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """:meth:`multi_scale_cams` and the image logits of the plain input,
        read from the TTA forward at the input size (None if no scale keeps
        it), so prediction needs no separate forward for them."""
        logits = []
        plain_cams = None
        if outputs is not None:
            logits.append(outputs['logits'].detach())
            plain_cams = torch.cat([outputs['cams'], outputs['aux_cams']], dim=1)
            plain_cams = plain_cams.detach()

        def cam_fn(batch: Tensor) -> Tensor:
            outputs = self.forward_outputs(batch)
            if not logits and batch.shape[-2:] == inputs.shape[-2:]:
                logits.append(outputs['logits'][: inputs.shape[0]])
            return torch.cat([outputs['cams'], outputs['aux_cams']], dim=1)

        cams = multi_scale_flip_cams(
            cam_fn,
            inputs,
            scales=scales,
            flip=flip,
            flip_merge='max',
            align_corners=self.align_corners,
            size_divisor=self.size_divisor,
            plain_cams=plain_cams,
            rounding=self.pseudo_cfg['cam_rounding'],
        )
        eps = self.pseudo_cfg['eps'] if eps is None else eps
        cams = minmax_normalize(cams, eps)
        fg = self.num_fg_classes
        return cams[:, :fg], cams[:, fg:], (logits[0] if logits else None)

    # ------------------------------------------------------------ inference
    def logits(self, inputs: Tensor) -> Tensor:
        """Image-level logits of the final classifier ``(B, C)``."""
        return self.forward_outputs(inputs)['logits']

    def seg_logits_tta(self, inputs: Tensor) -> Tensor:
        """Decoder logits at input size, averaged over ``seg_scales`` x flip."""
        cfg = self.test_cfg
        size = inputs.shape[-2:]
        total, count = None, 0
        for scale in cfg['seg_scales']:
            x = rescale_images(inputs, scale, self.align_corners, self.size_divisor)
            batch = torch.cat([x, x.flip(-1)]) if cfg['seg_flip'] else x
            logits = self.decode_head(self.extract_feat(batch))
            logits = F.interpolate(
                logits, size, mode='bilinear', align_corners=self.align_corners
            )
            if cfg['seg_flip']:
                plain, mirrored = logits.chunk(2)
                logits = plain + mirrored.flip(-1)
                count += 1
            total = logits if total is None else total + logits
            count += 1
        return total / count

    def cam_seg_logits(
        self, inputs: Tensor, labels: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor]:
        """CAM seg logits ``(B, C + 1, H, W)`` and image logits ``(B, C)``."""
        cfg = self.test_cfg
        cams, aux_cams, img_logits = self._multi_scale_cams_and_logits(
            inputs, cfg['cam_scales'], cfg['cam_flip'], cfg['eps'], None
        )
        chosen = cams if cfg['cam_source'] == 'final' else aux_cams
        if img_logits is None:
            img_logits = self.logits(inputs)
        return cams_to_seg_logits(chosen, cfg['bg_thr'], labels), img_logits

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Decoder logits ``(B, C + 1, H, W)`` of one forward (mmseg API)."""
        logits = self.decode_head(self.extract_feat(inputs))
        return F.interpolate(
            logits, inputs.shape[-2:], mode='bilinear', align_corners=self.align_corners
        )

    def predict(
        self, inputs: Tensor, data_samples: Optional[SampleList] = None
    ) -> SampleList:
        """Decoder masks in ``pred_sem_seg`` / ``seg_logits`` and CAM masks in
        ``cam_seg_logits`` (``test_cfg.output='seg'``), or CAM masks only in
        ``seg_logits`` (``'cam'``, e.g. for ``generate_pseudo_labels.py``)."""
        labels = None
        if self.test_cfg['use_labels']:
            labels = labels_for_prediction(
                data_samples, 'test_cfg.', 'model.test_cfg.use_labels=False'
            ).to(inputs.device)
        if data_samples is None:  # predictions at the input size
            size = tuple(inputs.shape[-2:])
            meta = dict(ori_shape=size, img_shape=size, pad_shape=size)
            data_samples = [SegDataSample(metainfo=meta) for _ in range(len(inputs))]
        cam_logits, img_logits = self.cam_seg_logits(inputs, labels)
        results = self.postprocess_result(cam_logits, data_samples)
        if self.test_cfg['output'] == 'seg':
            for sample in results:
                sample.set_data({CAM_SEG_LOGITS: sample.seg_logits})
            results = self.postprocess_result(self.seg_logits_tta(inputs), results)
            if self.test_cfg['crf'] is not None:
                images = images_at_prediction_size(
                    inputs, results, self.img_mean, self.img_std, self.align_corners
                )
                results = crf_refine_predictions(results, images, self.test_cfg['crf'])
        return attach_img_logits(results, img_logits)

    def _forward(
        self, inputs: Tensor, data_samples: Optional[SampleList] = None
    ) -> Tensor:
        """``mode='tensor'``: decoder logits at the feature resolution."""
        return self.decode_head(self.extract_feat(inputs))

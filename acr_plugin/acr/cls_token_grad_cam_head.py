"""Class-token-gradient localisation (GETAM-style) as a prediction head.

The head's one concept is the batched explanation of a batch: views, one
forward under attention capture, one backward for all classes
(:mod:`.class_slot_backward`), maps (:mod:`.grad_cam_ops`)."""

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from mmseg.utils import OptMultiConfig, SampleList
from torch import Tensor, nn

from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.attention.attention_sites import find_attention_modules
from acr_plugin.acr.class_slot_backward import (
    attention_grads_batched,
    attention_grads_looped,
    class_rows_unreached,
)
from acr_plugin.acr.grad_cam_ops import (
    check_variant,
    class_slots,
    flip_merge_sum,
    grad_cam_maps_batched,
    resolve_start_layer,
    scatter_slot_maps,
    slot_grad_outputs,
    upsample_token_maps,
)
from acr_plugin.models.host_contract import GradCAMHost, require_members
from acr_plugin.models.utils.cam_ops import cams_to_seg_logits, minmax_normalize
from acr_plugin.structures import attach_img_logits, labels_for_prediction

#: a batch's classes to explain: per-image index lists or a ``(B, C)`` mask
ClassSets = Union[Tensor, Sequence[Sequence[int]]]


@MODELS.register_module()
class ClsTokenGradCAMHead(BaseModule):
    """Localisation maps from the gradient of class logits w.r.t. attention.

    The ACR paper's localisation (Sun et al., arXiv 2308.04321, and its released
    inference script; steps 1-7): per image and class ``c`` to explain, in eval mode,
    the input is resized to ``input_size``; one forward gives the class-token logits
    ``z`` and the post-softmax attention ``A^l`` of every block (hooks of
    :class:`AttentionCapture` on ``capture_module``); ``g^l = dz_c / dA^l`` scores the
    patches of the class-token row in the layers from ``start_layer`` on (``variant``,
    see :mod:`.grad_cam_ops`), optionally refined by the patch affinity of all layers;
    the ``p x p`` map is upsampled bilinearly (``align_corners=True``) to the input
    size; with ``flip`` the mirrored view's map, mirrored back, is added; each class map
    is min-max normalised (``eps``). Classes not explained are all zero.

    Call graph::

        predict(model, inputs, samples)
          -> explain(model, inputs, classes | None)
               check_model(model) (GradCAMHost)
               forward (views [x, flip(x)]) under
                   AttentionCapture(model.captured_vit)
               -> attention_grads_batched(logits, A[start:], one-hot per
                  class slot) (or attention_grads_looped)
               -> model.num_prefix_tokens, model.token_grid(h, w)
               -> grad_cam_maps_batched -> upsample -> flip sum -> min-max
          -> cams_to_seg_logits(bg_thr) -> model.postprocess_result

    The model must implement the host contract ``GradCAMHost``
    (``acr_plugin.models.host_contract``: ``captured_vit``, ``patch_size``,
    ``num_prefix_tokens``, ``token_grid`` and ``logits``);
    :meth:`check_model` raises a ``TypeError`` naming a missing member and
    the model class (``ACRSegmentor`` calls it once at construction).

    Gradients: one forward per batch (the flipped views ride in the same
    batch). With ``batched`` all classes of a batch share ONE backward:
    ``grad_outputs`` is ``(K, 2B, C)`` with ``K`` the largest number of
    classes of an image, slot ``k`` of image ``b`` one-hot at its ``k``-th
    class (unused slots zero), and ``is_grads_batched=True`` (vmap over the
    backward). If an op has no vmap support, the head logs a warning and uses
    the per-class loop (``K`` backward passes through the same graph) from
    then on. Only ``torch.autograd.grad`` w.r.t. the captured attention is
    used: parameters' ``.grad`` are never touched, and the model's training
    flags (every submodule's) are restored. Grad mode is switched on locally,
    so the head works inside mmengine's ``no_grad`` test loop (not under
    ``torch.inference_mode``).

    Which classes: with ``use_labels``, the image's ``img_labels`` (the
    standard protocol when evaluating CAMs on a labelled split); otherwise
    the classes with ``sigmoid(logit) > 0.5`` on the plain
    (unflipped) view. An image without any class gets an all-background map.

    Requirement (checked): the logits must come from the class token(s)
    read by ``prefix_row``. After the backward, the selected layers are
    scanned from the last one down to the first layer whose gradient is not
    all zero (any row, head, image or class slot). If there is none, or the
    class rows of that layer are all zero for every class of the batch, the
    logits do not reach the class token through the selected layers (e.g. a
    patch-CAM model with global max pooling, or a classifier reading a block
    before ``start_layer``) and a ``ValueError`` naming the model class is
    raised.

    Args:
        variant (str): ``'grad'`` (the ACR script), ``'cam_grad'``,
            ``'grad_s'`` or ``'cam_grad_s'`` (the official argparse default).
            Defaults to ``'grad'``.
        start_layer (int): First summed layer, an index into the attention
            layers of ``capture_module`` (negative counts from the end; -2 of
            12 layers sums layers 10 and 11, as the official script).
            Defaults to -2.
        refine (bool): Multiply by the patch affinity (head-averaged
            ``A[P:, P:]`` summed over all layers, not renormalised).
            Defaults to False.
        flip (bool): Add the horizontally flipped view's map (flipped back).
            Defaults to True.
        input_size (int | tuple[int, int], optional): Resize the input
            (bilinear) to this size before the forward, e.g. ``(384, 384)``;
            maps are upsampled to the original input size. None keeps the
            input size. Defaults to None.
        eps (float): Min-max normalisation epsilon. Defaults to 1e-6.
        bg_thr (float, optional): Background score of the seg logits. None
            uses ``model.test_cfg['bg_thr']`` (0.5 if absent). Defaults to
            None.
        use_labels (bool, optional): Explain the image's labels (True) or
            the predicted classes (False). None uses
            ``model.test_cfg['use_labels']`` (True if absent). Defaults to
            None.
        batched (bool): One vmapped backward for all classes of a batch
            (falls back to the per-class loop if unsupported). Defaults to
            True.
        capture_module (str, optional): Dotted name of a submodule whose
            attention is captured instead of ``model.captured_vit`` (``''``
            for the model itself). Defaults to None (``captured_vit``).
        prefix_row (int | str): Class-token row read in each layer: an int
            (0: the class token), or ``'class'`` for row ``c`` when
            explaining class ``c`` (MCTformer-style models whose ``C`` first
            tokens are class tokens). Defaults to 0.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to None.
    """

    def __init__(
        self,
        variant: str = 'grad',
        start_layer: int = -2,
        refine: bool = False,
        flip: bool = True,
        input_size: Union[int, Tuple[int, int], None] = None,
        eps: float = 1e-6,
        bg_thr: Optional[float] = None,
        use_labels: Optional[bool] = None,
        batched: bool = True,
        capture_module: Optional[str] = None,
        prefix_row: Union[int, str] = 0,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        check_variant(variant)
        if isinstance(prefix_row, str) and prefix_row != 'class':
            raise ValueError(
                f'ClsTokenGradCAMHead: prefix_row must be an int or "class", '
                f'got "{prefix_row}"'
            )
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.variant = variant
        self.start_layer = int(start_layer)
        self.refine = refine
        self.flip = flip
        self.input_size = tuple(input_size) if input_size is not None else None
        self.eps = eps
        self.bg_thr = bg_thr
        self.use_labels = use_labels
        self.batched = batched
        self.capture_module = capture_module
        self.prefix_row = prefix_row
        self._vmap_failed = False

    # ------------------------------------------------------------ helpers
    def check_model(self, model: nn.Module) -> None:
        """Raise unless ``model`` implements ``GradCAMHost``."""
        require_members(model, GradCAMHost, 'ClsTokenGradCAMHead')

    def _capture_target(self, model: nn.Module) -> nn.Module:
        if self.capture_module is None:
            return model.captured_vit
        if not self.capture_module:
            return model
        try:
            return model.get_submodule(self.capture_module)
        except AttributeError as err:
            raise AttributeError(
                f'ClsTokenGradCAMHead: {type(model).__name__} has no submodule '
                f'"{self.capture_module}" (capture_module)'
            ) from err

    def _test_cfg(self, model: nn.Module, key: str, default):
        value = getattr(self, key)
        if value is not None:
            return value
        cfg = getattr(model, 'test_cfg', None) or {}
        return cfg.get(key, default)

    @staticmethod
    def _token_layout(
        model: nn.Module, hw: Tuple[int, int], num_tokens: int
    ) -> Tuple[int, Tuple[int, int]]:
        """``(num_prefix, (gh, gw))`` of a forward with ``num_tokens`` tokens,
        from the host contract."""
        num_prefix = int(model.num_prefix_tokens)
        grid = tuple(int(v) for v in model.token_grid(*hw))
        if num_prefix + grid[0] * grid[1] != num_tokens:
            raise ValueError(
                f'ClsTokenGradCAMHead: {type(model).__name__} lays a '
                f'{hw[0]}x{hw[1]} input on {num_prefix} prefix tokens and a '
                f'{grid[0]}x{grid[1]} grid, but the captured attention has '
                f'{num_tokens} tokens'
            )
        return num_prefix, grid

    def _class_sets_from(self, class_sets: ClassSets, batch: int) -> List[List[int]]:
        if isinstance(class_sets, Tensor):
            if class_sets.dim() != 2 or class_sets.shape[0] != batch:
                raise ValueError(
                    'ClsTokenGradCAMHead: class_sets as a tensor must be a '
                    f'(B={batch}, C) mask, got shape {tuple(class_sets.shape)}'
                )
            return [row.nonzero().flatten().tolist() for row in class_sets > 0]
        sets = [sorted({int(c) for c in classes}) for classes in class_sets]
        if len(sets) != batch:
            raise ValueError(
                f'ClsTokenGradCAMHead: {len(sets)} class sets for {batch} images'
            )
        return sets

    # ------------------------------------------------------------ gradients
    def _forward(
        self, model: nn.Module, target: nn.Module, views: Tensor, layers: List[int]
    ) -> Tuple[Tensor, List[Tensor]]:
        with AttentionCapture(target, layers=layers) as capture:
            logits = model.logits(views)
            attns = capture.pop()
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise ValueError(
                f'ClsTokenGradCAMHead: {type(model).__name__}.logits '
                'must return (B, C) image logits'
            )
        return logits, attns

    _grads_batched = staticmethod(attention_grads_batched)
    _grads_loop = staticmethod(attention_grads_looped)

    def _check_class_rows(
        self,
        model: nn.Module,
        grads: List[Optional[Tensor]],
        rows: Union[int, Tensor],
        layer_ids: List[int],
    ) -> None:
        """Raise if the logits do not reach the class rows (see class doc)."""
        reason = class_rows_unreached(grads, rows, layer_ids, self.start_layer)
        if reason is None:
            return
        raise ValueError(
            f'ClsTokenGradCAMHead: the logits() of '
            f'{type(model).__name__} do not come from its class token: {reason}. '
            'Class-token-gradient CAMs need image logits computed from the class '
            'token (e.g. ViTCAM with token_head=True); a patch-CAM model (global '
            'pooling of patch scores) cannot be explained this way, and a '
            'classifier reading an earlier block needs a lower start_layer.'
        )

    # ------------------------------------------------------------ maps
    def explain(
        self,
        model: nn.Module,
        inputs: Tensor,
        class_sets: Optional[ClassSets] = None,
    ) -> Dict[str, Tensor]:
        """Gradient CAMs of a batch.

        Args:
            model (nn.Module): The classifier (e.g. a ``ViTCAM``).
            inputs (Tensor): Normalised images ``(B, 3, H, W)``.
            class_sets (Tensor | Sequence[Sequence[int]], optional): Classes
                to explain per image: a ``(B, C)`` mask or index lists. None
                explains the predicted classes (``sigmoid > 0.5``).
                Defaults to None.

        Returns:
            dict: ``cams`` ``(B, C, H, W)`` normalised maps (zero for classes
            not explained), ``classes`` the ``(B, C)`` mask of explained
            classes and ``logits`` ``(B, C)`` of the plain view (detached).
        """
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                'ClsTokenGradCAMHead needs autograd: call it under '
                'torch.no_grad() or normally, not under torch.inference_mode()'
            )
        if inputs.dim() != 4:
            raise ValueError(
                'ClsTokenGradCAMHead expects (B, 3, H, W) inputs, got shape '
                f'{tuple(inputs.shape)}'
            )
        batch, _, height, width = inputs.shape
        self.check_model(model)
        target = self._capture_target(model)
        depth = len(find_attention_modules(target))
        start = resolve_start_layer(self.start_layer, depth)
        layers = list(range(depth)) if self.refine else list(range(start, depth))

        x = inputs.detach().clone()
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(
                x, size=self.input_size, mode='bilinear', align_corners=False
            )
        views = torch.cat([x, x.flip(-1)]) if self.flip else x
        num_views = 2 if self.flip else 1

        flags = {module: module.training for module in model.modules()}
        model.eval()
        try:
            with torch.enable_grad():
                result = self._explain_views(
                    model, target, views, layers, start, batch, num_views, class_sets
                )
        finally:
            for module, flag in flags.items():
                module.training = flag
        logits, maps, mask, grid = result
        cams = upsample_token_maps(maps, grid, (height, width))
        cams = flip_merge_sum(cams, self.flip)
        cams = minmax_normalize(cams, self.eps)
        cams = cams * mask[:, :, None, None].to(cams.dtype)
        return dict(cams=cams.detach(), classes=mask, logits=logits.detach())

    def _explain_views(
        self,
        model: nn.Module,
        target: nn.Module,
        views: Tensor,
        layers: List[int],
        start: int,
        batch: int,
        num_views: int,
        class_sets: Optional[ClassSets],
    ) -> Tuple[Tensor, Tensor, Tensor, Tuple[int, int]]:
        depth = layers[-1] + 1
        views = views.requires_grad_(True)  # a graph even if every param is frozen
        logits, attns = self._forward(model, target, views, layers)
        num_classes = logits.shape[1]
        plain_logits = logits[:batch]
        if class_sets is None:
            sets = self._class_sets_from(
                torch.sigmoid(plain_logits.detach()) > 0.5, batch
            )
        else:
            sets = self._class_sets_from(class_sets, batch)
        for classes in sets:
            if any(not 0 <= c < num_classes for c in classes):
                raise ValueError(
                    f'ClsTokenGradCAMHead: class index out of range in {classes} '
                    f'for {num_classes} classes'
                )
        mask = torch.zeros(batch, num_classes, device=logits.device)
        for b, classes in enumerate(sets):
            mask[b, classes] = 1.0
        num_prefix, grid = self._token_layout(
            model, tuple(views.shape[-2:]), attns[0].shape[-1]
        )
        slots = class_slots(sets, device=logits.device).repeat(1, num_views)
        if slots.shape[0] == 0:  # no class to explain in the whole batch
            maps = logits.new_zeros(views.shape[0], num_classes, grid[0] * grid[1])
            return plain_logits, maps, mask, grid

        if self.prefix_row == 'class':
            if num_prefix < num_classes:
                raise ValueError(
                    f'ClsTokenGradCAMHead: prefix_row="class" needs one class token '
                    f'per class, but {type(target).__name__} has {num_prefix} '
                    f'prefix tokens for {num_classes} classes'
                )
            rows: Union[int, Tensor] = slots.clamp(min=0)
        else:
            if not 0 <= self.prefix_row < num_prefix:
                raise ValueError(
                    f'ClsTokenGradCAMHead: prefix_row={self.prefix_row} but '
                    f'{type(target).__name__} has {num_prefix} prefix tokens'
                )
            rows = int(self.prefix_row)

        offset = start - layers[0]  # index of the start layer in `attns`
        grad_inputs = attns[offset:]
        grad_outputs = slot_grad_outputs(slots, num_classes, logits.dtype)
        grads = None
        if self.batched and not self._vmap_failed:
            try:
                grads = self._grads_batched(logits, grad_inputs, grad_outputs)
            except (RuntimeError, NotImplementedError) as err:
                self._vmap_failed = True
                print_log(
                    'ClsTokenGradCAMHead: the batched backward (vmap) failed for '
                    f'{type(model).__name__} ({type(err).__name__}: {err}); using '
                    'the per-class loop from now on',
                    logger='current',
                    level=logging.WARNING,
                )
                # the failed backward may have freed the graph: run it again
                views = views.detach().requires_grad_(True)
                logits, attns = self._forward(model, target, views, layers)
                plain_logits = logits[:batch]
                grad_inputs = attns[offset:]
        if grads is None:
            grads = self._grads_loop(logits, grad_inputs, grad_outputs)

        self._check_class_rows(model, grads, rows, list(range(start, depth)))
        maps = grad_cam_maps_batched(
            [a.detach() for a in attns],
            [None] * offset + grads,
            variant=self.variant,
            start_layer=offset,
            num_prefix=num_prefix,
            prefix_row=rows,
            refine=self.refine,
        )
        maps = scatter_slot_maps(maps, slots, num_classes)
        return plain_logits, maps, mask, grid

    def compute_cams(
        self, model: nn.Module, inputs: Tensor, class_sets: Optional[ClassSets]
    ) -> Tensor:
        """Normalised gradient CAMs ``(B, C, H, W)`` (see :meth:`explain`).

        Args:
            model (nn.Module): The classifier.
            inputs (Tensor): Normalised images ``(B, 3, H, W)``.
            class_sets (Tensor | Sequence[Sequence[int]] | None): ``(B, C)``
                mask or per-image class indices; None explains the predicted
                classes.

        Returns:
            Tensor: ``(B, C, H, W)`` maps in [0, 1], zero for other classes.
        """
        return self.explain(model, inputs, class_sets)['cams']

    def predict(
        self,
        model: nn.Module,
        inputs: Tensor,
        data_samples: Optional[SampleList] = None,
    ) -> SampleList:
        """Gradient-CAM pseudo masks as ``seg_logits`` / ``pred_sem_seg``.

        Args:
            model (nn.Module): The segmentor to explain (e.g. ``ViTCAM``).
            inputs (Tensor): Normalised images ``(B, 3, H, W)``.
            data_samples (list[SegDataSample], optional): Samples carrying
                ``img_labels`` (needed when ``use_labels``).

        Returns:
            list[SegDataSample]: ``seg_logits`` ``(C + 1, H, W)`` (channel 0
            the constant ``bg_thr``, classes not explained zero),
            ``pred_sem_seg`` and ``pred_img_logits`` per sample.
        """
        use_labels = self._test_cfg(model, 'use_labels', True)
        bg_thr = self._test_cfg(model, 'bg_thr', 0.5)
        class_sets = None
        if use_labels:
            class_sets = labels_for_prediction(
                data_samples, 'ClsTokenGradCAMHead: ', 'use_labels=False'
            ).to(inputs.device)
        out = self.explain(model, inputs, class_sets)
        seg_logits = cams_to_seg_logits(out['cams'], bg_thr, out['classes'])
        results = model.postprocess_result(seg_logits, data_samples)
        return attach_img_logits(results, out['logits'])

"""Class token contrast (CTC) of ToCo (Ru et al., CVPR 2023).

The projected class tokens of ``S`` student views are contrasted with those
of ``G`` global views (EMA teacher, constants). In ToCo the students are the
2 global views followed by the local crops, and both global views are always
positive. ``e_jk = exp(<t_j, s_k> / T)`` on the projection head's raw outputs
(they are not unit vectors, and are not normalised here, as in ToCo). Per
image, with ``Pos`` / ``Neg`` its positive / negative students and ``n_j =
sum_{n in Neg} e_jn``::

    l = sum_j [ sum_{k in Pos} -log(e_jk / (e_jk + n_j + eps))
                - log(1 / (1 + n_j + eps)) ] / (2 * (|Pos| + eps))

and the loss is the batch mean of ``l``. The constant 2 is ToCo's (its two
global views), kept whatever ``G`` is. Every image needs a positive student
(ToCo's global views guarantee it); an image without one is an error.
"""

import torch
import torch.nn as nn
from mmseg.registry import MODELS
from torch import Tensor


def _check_ctc_inputs(student: Tensor, teacher: Tensor, positive: Tensor) -> None:
    if student.dim() != 3:
        raise ValueError(
            'class_token_contrast: student must be (B, S, K), got shape '
            f'{tuple(student.shape)}'
        )
    if teacher.dim() != 3:
        raise ValueError(
            'class_token_contrast: teacher must be (B, G, K), got shape '
            f'{tuple(teacher.shape)}'
        )
    b, n_student, k = student.shape
    if teacher.shape[0] != b or teacher.shape[2] != k:
        raise ValueError(
            f'class_token_contrast: teacher {tuple(teacher.shape)} must share '
            f'the batch size and feature size of student {tuple(student.shape)}'
        )
    if tuple(positive.shape) != (b, n_student):
        raise ValueError(
            f'class_token_contrast: positive must be (B, S) = {(b, n_student)}, '
            f'got shape {tuple(positive.shape)}'
        )
    if positive.dtype != torch.bool:
        raise ValueError(
            f'class_token_contrast: positive must be a bool tensor, got '
            f'{positive.dtype}'
        )


def class_token_contrast(
    student: Tensor,
    teacher: Tensor,
    positive: Tensor,
    temperature: float,
    eps: float = 1e-4,
) -> Tensor:
    """CTC loss of student outputs against global-view teachers.

    Args:
        student (Tensor): ``(B, S, K)`` projected outputs of the student
            views (ToCo: the 2 global views, then the local crops).
        teacher (Tensor): ``(B, G, K)`` EMA-teacher outputs of the global
            views; detached here (no gradient reaches it).
        positive (Tensor): ``(B, S)`` bool, True for positive students; each
            image needs at least one.
        temperature (float): Softmax temperature ``T`` (> 0).
        eps (float): Stabiliser of the ratios and of the ``|Pos|``
            normaliser. Defaults to 1e-4.

    Returns:
        Tensor: Scalar loss (batch mean).

    Raises:
        ValueError: If shapes, the mask dtype or the temperature are wrong, or
            an image has no positive student.
    """
    _check_ctc_inputs(student, teacher, positive)
    if temperature <= 0:
        raise ValueError(
            f'class_token_contrast: temperature must be > 0, got {temperature}'
        )
    if not bool(positive.any(dim=1).all()):
        raise ValueError(
            'class_token_contrast: every image needs a positive student (ToCo '
            'counts its global views as positives), got none for image(s) '
            f'{positive.any(dim=1).logical_not().nonzero().flatten().tolist()}'
        )
    teacher = teacher.detach()
    logits = torch.bmm(teacher, student.transpose(1, 2)) / temperature  # (B, G, S)
    e = logits.exp()

    pos = positive[:, None, :]  # (B, 1, S)
    neg_sum = torch.where(pos, 0.0, e).sum(dim=-1, keepdim=True)  # (B, G, 1)
    # -log(e / (e + n + eps)) = log(e + n + eps) - log(e)
    pos_terms = torch.log(e + neg_sum + eps) - logits
    pos_sum = torch.where(pos, pos_terms, 0.0).sum(dim=(1, 2))  # (B,)
    neg_terms = torch.log1p(neg_sum + eps).sum(dim=(1, 2))  # (B,)
    n_pos = positive.sum(dim=1).to(logits.dtype)
    per_image = (pos_sum + neg_terms) / (2 * (n_pos + eps))
    return per_image.mean()


@MODELS.register_module()
class ClassTokenContrastLoss(nn.Module):
    """ToCo's class token contrast loss (mmseg loss contract).

    See :func:`class_token_contrast`.

    Args:
        loss_weight (float): Multiplier, read at call time (a hook may
            change it). Defaults to 0.5.
        temperature (float): Softmax temperature (0.5 VOC, 1.0 COCO).
            Defaults to 0.5.
        loss_name (str): Log key; must start with ``loss_``. Defaults to
            ``'loss_ctc'``.
        eps (float): See :func:`class_token_contrast`. Defaults to 1e-4.
    """

    def __init__(
        self,
        loss_weight: float = 0.5,
        temperature: float = 0.5,
        loss_name: str = 'loss_ctc',
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        if not loss_name.startswith('loss_'):
            raise ValueError(
                f'ClassTokenContrastLoss: loss_name must start with "loss_": '
                f'{loss_name}'
            )
        if temperature <= 0:
            raise ValueError(
                f'ClassTokenContrastLoss: temperature must be > 0, got {temperature}'
            )
        self.loss_weight = loss_weight
        self.temperature = temperature
        self.eps = eps
        self._loss_name = loss_name

    def forward(
        self, student: Tensor, teacher: Tensor, positive: Tensor, **kwargs
    ) -> Tensor:
        """Weighted CTC; ``(B, S, K)`` student, ``(B, G, K)`` teacher."""
        return self.loss_weight * class_token_contrast(
            student, teacher, positive, self.temperature, self.eps
        )

    @property
    def loss_name(self) -> str:
        return self._loss_name

"""Projection head of ToCo's class token contrast, with its EMA teacher."""

import copy
from typing import Iterator, List, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from mmseg.utils import OptMultiConfig
from torch import Tensor, nn


def _build_branch(
    in_channels: int,
    hidden_channels: int,
    bottleneck_channels: int,
    out_channels: int,
    num_layers: int,
) -> nn.ModuleDict:
    """MLP ``in -> hidden x (num_layers - 1) -> bottleneck`` and last layer."""
    widths = [in_channels] + [hidden_channels] * (num_layers - 1)
    layers: List[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.GELU()]
    layers.append(nn.Linear(widths[-1], bottleneck_channels))
    return nn.ModuleDict(
        dict(
            mlp=nn.Sequential(*layers),
            last_layer=nn.Linear(bottleneck_channels, out_channels, bias=False),
        )
    )


@MODELS.register_module()
class CTCProjectionHead(BaseModule):
    """ToCo's class-token projection head (student) and its EMA teacher.

    Student: an MLP of ``num_layers`` Linear layers ``in_channels ->
    hidden_channels -> ... -> bottleneck_channels`` with GELU between them,
    L2 normalisation, then a weight-normalised ``Linear(bottleneck_channels,
    out_channels, bias=False)`` whose norm ``g`` is fixed to 1: each row of
    the stored weight ``v`` is divided by its norm at every call (the
    parametrisation of ``weight_norm`` with ``g = 1``, not trained).

    Teacher: a copy of the whole student (``self.teacher``, parameters with
    ``requires_grad=False`` so optimisers built from trainable parameters
    skip them) updated only by :meth:`momentum_update`; it is part of the
    state dict, so resuming restores it exactly. :meth:`init_weights` copies
    the initialised student into the teacher.

    Args:
        in_channels (int): Input (class token) width. Defaults to 768.
        hidden_channels (int): Hidden width. Defaults to 2048.
        bottleneck_channels (int): Width before the last layer.
            Defaults to 256.
        out_channels (int): Output width. Defaults to 1024.
        num_layers (int): Linear layers of the MLP (>= 1). Defaults to 3.
        init_cfg (dict or list[dict], optional): Initialisation config;
            None means truncated normal (std 0.02, zero bias) on the Linear
            layers. Defaults to None.
    """

    def __init__(
        self,
        in_channels: int = 768,
        hidden_channels: int = 2048,
        bottleneck_channels: int = 256,
        out_channels: int = 1024,
        num_layers: int = 3,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        if init_cfg is None:
            init_cfg = dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.0)
        super().__init__(init_cfg=init_cfg)
        if num_layers < 1:
            raise ValueError(
                f'CTCProjectionHead: num_layers must be >= 1, got {num_layers}'
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.student = _build_branch(
            in_channels, hidden_channels, bottleneck_channels, out_channels, num_layers
        )
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)

    def init_weights(self) -> None:
        """Initialise the student (``init_cfg``) and copy it to the teacher."""
        super().init_weights()
        self.sync_teacher()

    @torch.no_grad()
    def sync_teacher(self) -> None:
        """Set every teacher parameter equal to the student's."""
        for target, source in self._parameter_pairs():
            target.copy_(source)

    def _parameter_pairs(self) -> Iterator[Tuple[nn.Parameter, nn.Parameter]]:
        return zip(self.teacher.parameters(), self.student.parameters(), strict=True)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() < 1 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f'CTCProjectionHead: x must be (N, {self.in_channels}), got '
                f'shape {tuple(x.shape)}'
            )

    @staticmethod
    def _bottleneck(branch: nn.ModuleDict, x: Tensor) -> Tensor:
        return F.normalize(branch['mlp'](x), dim=-1)

    @staticmethod
    def _last(branch: nn.ModuleDict, z: Tensor) -> Tensor:
        weight = F.normalize(branch['last_layer'].weight, dim=1)  # g = 1
        return F.linear(z, weight)

    def forward(self, x: Tensor) -> Tensor:
        """Student output ``(N, out_channels)`` of ``(N, in_channels)`` inputs."""
        self._check_input(x)
        return self._last(self.student, self._bottleneck(self.student, x))

    @torch.no_grad()
    def forward_teacher(self, x: Tensor) -> Tensor:
        """Teacher output ``(N, out_channels)``, detached (no graph)."""
        self._check_input(x)
        return self._last(self.teacher, self._bottleneck(self.teacher, x)).detach()

    @torch.no_grad()
    def momentum_update(self, momentum: float = 0.9) -> None:
        """EMA step ``teacher = m * teacher + (1 - m) * student`` per parameter.

        Args:
            momentum (float): ``m`` in ``[0, 1]``. Defaults to 0.9.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f'CTCProjectionHead.momentum_update: momentum must be in [0, 1], '
                f'got {momentum}'
            )
        for target, source in self._parameter_pairs():
            target.mul_(momentum).add_(source.detach(), alpha=1.0 - momentum)

"""Small models with attention for the attention tests (not a test module)."""

import timm
import torch
import torch.nn as nn
from mmseg.registry import MODELS

TIMM_BASE = dict(
    pretrained=False, num_classes=5, img_size=32, patch_size=8, embed_dim=32, depth=3
)
TIMM_VARIANTS = {
    'vit': ('vit_tiny_patch16_224', dict(num_heads=2), (2, 3, 32, 32)),
    'deit_distilled': ('deit_tiny_distilled_patch16_224', dict(num_heads=2), None),
    'reg_tokens_qk_norm': (
        'vit_tiny_patch16_224',
        dict(num_heads=4, reg_tokens=2, qk_norm=True, qkv_bias=False),
        None,
    ),
    'non_square': (
        'vit_tiny_patch16_224',
        dict(num_heads=2, dynamic_img_size=True),
        (2, 3, 32, 48),
    ),
}
MMSEG_VIT = dict(
    type='VisionTransformer',
    img_size=(32, 32),
    patch_size=8,
    embed_dims=32,
    num_layers=2,
    num_heads=2,
    mlp_ratio=2,
    out_indices=(1,),
    with_cls_token=True,
    output_cls_token=True,
    final_norm=True,
)


def build_timm(variant: str, dtype=torch.float32):
    name, kwargs, shape = TIMM_VARIANTS[variant]
    torch.manual_seed(0)
    model = timm.create_model(name, **TIMM_BASE, **kwargs).to(dtype)
    model.eval()
    for block in model.blocks:
        block.attn.fused_attn = True
    x = torch.randn(shape or (2, 3, 32, 32), dtype=dtype)
    return model, x


class MMSegClassifier(nn.Module):
    """mmseg ViT + a linear head on the output class token."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = MODELS.build(MMSEG_VIT)
        self.backbone.init_weights()
        # non-trivial weights everywhere (init_weights zeroes some biases)
        with torch.no_grad():
            for p in self.backbone.parameters():
                p.add_(0.05 * torch.randn_like(p))
        self.head = nn.Linear(32, 5)

    @property
    def blocks(self):
        return self.backbone.layers

    def forward(self, x):
        patch_map, cls_token = self.backbone(x)[-1]
        return self.head(cls_token) + patch_map.mean() * 0.1


def build_mmseg(dtype=torch.float32):
    model = MMSegClassifier().to(dtype)
    model.eval()
    torch.manual_seed(1)
    return model, torch.randn(2, 3, 32, 32, dtype=dtype)


def no_hooks_left(model: nn.Module) -> bool:
    for module in model.modules():
        for hooks in (
            module._forward_hooks,
            module._forward_pre_hooks,
            module._forward_hooks_with_kwargs,
            module._forward_pre_hooks_with_kwargs,
        ):
            if hooks:
                return False
    return True

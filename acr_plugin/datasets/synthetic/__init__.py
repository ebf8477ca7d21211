"""Procedural generator of the embedded synthetic WSSS benchmark (pure numpy)."""

from .generator import (
    GENERATOR_VERSION,
    HeadStyle,
    SyntheticSpec,
    class_names,
    class_palette,
    generate_sample,
    head_style,
    load_or_generate,
)

__all__ = [
    'GENERATOR_VERSION',
    'HeadStyle',
    'SyntheticSpec',
    'class_names',
    'class_palette',
    'generate_sample',
    'head_style',
    'load_or_generate',
]

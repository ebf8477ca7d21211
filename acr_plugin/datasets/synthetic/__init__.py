"""Procedural generator of the embedded synthetic WSSS benchmark (pure numpy)."""

from .cache import load_or_generate
from .generator import generate_sample
from .spec import (
    GENERATOR_VERSION,
    HeadStyle,
    SyntheticSpec,
    class_names,
    class_palette,
    head_style,
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

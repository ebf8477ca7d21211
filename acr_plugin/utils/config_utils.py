"""Merge a model's option dicts (``test_cfg``, ``pseudo_cfg`` ...) with their
defaults, refusing keys the model does not read."""

from typing import Any, Dict, Mapping, Optional


def merge_with_defaults(
    defaults: Mapping[str, Any], given: Optional[Mapping[str, Any]], name: str
) -> Dict[str, Any]:
    """``defaults`` updated with ``given``, every key of which must be one of
    ``defaults``' (a misspelt key would otherwise be ignored silently).

    Args:
        defaults (Mapping): Every key the option dict may hold, with its default.
        given (Mapping, optional): The configured values (None: none).
        name (str): How the error names the dict, e.g. ``'ToCo test_cfg'``.

    Returns:
        dict: A new dict.

    Raises:
        ValueError: Naming the unknown keys and the allowed ones.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f'{name}: unknown key(s) {", ".join(unknown)}; allowed: '
            f'{", ".join(sorted(defaults))}'
        )
    return {**defaults, **given}

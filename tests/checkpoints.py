"""Read the runner checkpoints that tests write, on every supported torch."""

from acr_plugin.utils.compat import mmengine_safe_globals, weights_only_load


def load_runner_checkpoint(path: str) -> dict:
    """A runner checkpoint, weights-only with mmengine's checkpoint types
    allowed (so a test fails if a checkpoint needs an unsafe load)."""
    return weights_only_load(path, mmengine_safe_globals(), map_location='cpu')

"""Package-wide helpers: compatibility shims, config helpers, host checks."""

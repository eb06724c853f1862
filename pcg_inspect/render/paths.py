"""Paths as a person reads them in a view."""

from __future__ import annotations

import os


def short_path(path: str) -> str:
    """Relative to the working directory when below it, else as given ('?' when empty)."""
    if not path:
        return "?"
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel

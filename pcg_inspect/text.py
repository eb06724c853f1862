"""Text for people: paths as a person reads them. No rich here; views build on it."""

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


def location(file: str, line: int) -> str:
    """'short/path.py:12' ('short/path.py' without a line, '' without a file)."""
    if not file:
        return ""
    return f"{short_path(file)}:{line}" if line else short_path(file)


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with '…' when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"

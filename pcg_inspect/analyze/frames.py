"""Which frames are the user's: the line to edit is the deepest frame outside torch, stdlib and libraries."""

from __future__ import annotations

import linecache
import os
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from ..report import Frame


def _library_dirs() -> tuple[str, ...]:
    import sys

    return _library_dirs_for(tuple(sys.path))


@lru_cache(maxsize=8)
def _library_dirs_for(sys_path: tuple[str, ...]) -> tuple[str, ...]:
    # torch, the stdlib, site-packages, and every other import root on sys.path except the
    # working directory (packages installed with --target or PYTHONPATH are libraries too).
    import torch

    dirs = {str(Path(torch.__file__).resolve().parent)}
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            dirs.add(str(Path(paths[key]).resolve()))
    cwd = str(Path.cwd().resolve())
    for entry in sys_path:
        if not entry:
            continue
        p = str(Path(entry).resolve())
        if p != cwd and not cwd.startswith(p + os.sep) and Path(p).is_dir():
            dirs.add(p)
    dirs.add(str(Path(__file__).resolve().parents[1]))  # pcg_inspect itself
    return tuple(sorted(dirs, key=len, reverse=True))


@lru_cache(maxsize=4096)
def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return path


def is_user_file(path: str, roots: Sequence[str] = ()) -> bool:
    """True when ``path`` is code the user edits: under a target root, or outside torch/stdlib/site-packages."""
    if not path or path.startswith("<"):
        return False
    p = _resolved(path)
    for r in roots:
        if p.startswith(r.rstrip(os.sep) + os.sep):
            return True
    for d in _library_dirs():
        if p.startswith(d + os.sep):
            return False
    return True


def source_line(path: str, line: int) -> str:
    """The stripped source line ('' when unavailable)."""
    return linecache.getline(path, line).strip() if path and line > 0 else ""


def to_frames(raw: Iterable[tuple[str, int, str]], roots: Sequence[str]) -> tuple[Frame, ...]:
    """Report frames (with source lines and user/library flags), resume-function names cleaned."""
    out = []
    for file, line, func in raw:
        out.append(Frame(file, line, clean_function(func), source_line(file, line), is_user_file(file, roots)))
    return tuple(out)


def user_frame(frames: Sequence[Frame]) -> Frame | None:
    """The deepest user frame (where the user edits)."""
    for f in reversed(frames):
        if f.is_user:
            return f
    return None


def clean_function(name: str) -> str:
    """'torch_dynamo_resume_in_forward_at_19' -> 'forward'."""
    if name.startswith("torch_dynamo_resume_in_"):
        rest = name[len("torch_dynamo_resume_in_"):]
        return rest.rsplit("_at_", 1)[0]
    return name

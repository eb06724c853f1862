"""Which frames are the user's: the line to edit is the deepest frame outside torch, stdlib and libraries."""

from __future__ import annotations

import linecache
import re
import os
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from dataclasses import dataclass
from types import FrameType

_OWN_PKG = str(Path(__file__).resolve().parent)


@dataclass(frozen=True)
class Frame:
    """One frame of a user stack."""

    file: str
    """Absolute path of the source file."""
    line: int
    """1-based line number."""
    function: str
    """Function name."""
    code: str = ""
    """The source line, stripped."""
    is_user: bool = True
    """False for library / torch / stdlib frames."""


def library_entry(frames: Sequence[Frame]) -> Optional[Frame]:
    """The library function the user's code called (the first frame after the last user frame, outside torch)."""
    last_user = max((i for i, f in enumerate(frames) if f.is_user), default=-1)
    for f in frames[last_user + 1:]:
        if not f.is_user and "/torch/" not in f.file.replace("\\", "/"):
            return f
    return None


def library_frame(frames: Sequence[Frame]) -> Optional[Frame]:
    """The deepest frame outside the user's code and outside torch's own machinery (None: no library frame)."""
    lib = [f for f in frames if not f.is_user]
    for f in reversed(lib):
        if "/torch/" not in f.file.replace("\\", "/"):
            return f
    return lib[-1] if lib else None


def _library_dirs() -> tuple[str, ...]:
    import sys

    return _library_dirs_for(tuple(sys.path))


@lru_cache(maxsize=8)
def _library_dirs_for(sys_path: tuple[str, ...]) -> tuple[str, ...]:
    # torch, the stdlib, site-packages, and every other import root on sys.path except the
    # working directory (packages installed with --target or PYTHONPATH are libraries too).
    # torch's folder is found without importing it (a view must not pay for torch, and a run stopped
    # by --timeout in the middle of `import torch` must not import it again half-initialised).
    import importlib.util

    spec = importlib.util.find_spec("torch")
    dirs = {str(Path(spec.origin).resolve().parent)} if spec is not None and spec.origin else set()
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
    return not _GENERATED.search(p)


_GENERATED = re.compile(r"[/\\](torchinductor_[^/\\]*|\.triton|triton_cache|torch_compile_cache)[/\\]")
"""Code torch generates (Inductor's output, Triton's cache): never a line the user edits."""


def own_file(path: str) -> bool:
    """A file of pcg-inspect itself (a model target's wrapper, say): never the line a user edits."""
    return _resolved(path).startswith(_OWN_PKG + os.sep)


def live_user_frame(roots: Sequence[str] = ()) -> Optional[FrameType]:
    """The deepest frame of the user's code on the current Python stack (pcg_inspect's own frames skipped)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(_OWN_PKG) and is_user_file(name, roots):
            return frame
        frame = frame.f_back
    return None


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


_STACK_RE = re.compile(r'File "([^"]+)", line (\d+)')


def stack_locations(stack_trace: str) -> list[tuple[str, int]]:
    """(file, line) of each frame in an FX node's ``stack_trace`` text, outermost first."""
    return [(file, int(line)) for file, line in _STACK_RE.findall(stack_trace or "")]


def node_user_location(node: Any, roots: Sequence[str]) -> tuple[str, int]:
    """The user line an FX node came from (deepest user frame of its stack trace; ('', 0) if none)."""
    frames = stack_locations(node.meta.get("stack_trace") or "")
    for file, line in reversed(frames):
        if is_user_file(file, roots):
            return file, line
    return frames[-1] if frames else ("", 0)


def spec_roots(spec: str) -> tuple[str, ...]:
    """Folders whose files are the user's code for a target string, found without importing anything:
    a file target's folder; for a model, transformers' modeling files; () for a module target."""
    import importlib.util

    where = spec.rpartition(":")[0] if ":" in spec else ""
    if where and (where.endswith(".py") or "/" in where or "\\" in where):
        return (str(Path(where).expanduser().resolve().parent),)
    if not where:
        found = importlib.util.find_spec("transformers")
        if found is not None and found.origin:
            return (str(Path(found.origin).resolve().parent / "models"),)
    return ()


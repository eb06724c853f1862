"""What can be checked before a child starts, without torch: so a typo answers in a fraction of a second."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..errors import TargetError, UsageError
from ..options import OptionError, TraceOptions


def check(options: TraceOptions) -> None:
    """Refuse what would fail in the child anyway: model options on a file target, a missing or unparsable
    target file, an unknown model name, more ranks than the machine can run.

    Raises:
        UsageError, TargetError: one line, with the closest bundled names for a mistyped model.
    """
    from ..models import bundled, is_model_spec

    spec = options.target
    model = is_model_spec(spec)
    if not options.model.is_default() and not model:
        raise UsageError("model options (--layers, --num-layers, --attn, --override; in the API layers, num_layers, attn, "
                         f"overrides) apply to model targets only, not to {spec!r} (a file:factory target builds its own module)")
    if not model and ":" not in spec:
        names = list(bundled())
        close = difflib.get_close_matches(spec.lower(), [n.lower() for n in names], n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(n for n in names if n.lower() in close)}? " if close else ""
        raise TargetError(f"unknown target {spec!r}: {hint}`pcg-inspect models` lists the bundled models; a file target is "
                          "'path/to/file.py:factory', a module target 'package.module:factory'")
    if not model:
        _check_file(spec)
    _check_ranks(options)


def _check_file(spec: str) -> None:
    where = spec.rpartition(":")[0]
    if not (where.endswith(".py") or "/" in where or "\\" in where):
        return  # package.module:factory: found by importing it, in the child
    path = Path(where).expanduser()
    if not path.is_file():
        raise TargetError(f"target file not found: {where}")
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise TargetError(f"cannot read {where}: {exc.strerror}") from None
    try:
        compile(source, str(path.resolve()), "exec", dont_inherit=True)
    except SyntaxError as exc:
        at = f"{exc.filename}:{exc.lineno}" if exc.lineno else str(exc.filename)
        raise TargetError(f"the target does not parse: {exc.msg} at {at}"
                          + (f": {exc.text.strip()}" if exc.text else "")) from None
    except (ValueError, TypeError) as exc:  # null bytes
        raise TargetError(f"the target does not parse: {exc}") from None


def _check_ranks(options: TraceOptions) -> None:
    if options.nproc <= 1:
        return
    if options.device.startswith("cuda"):
        gpus = gpu_count()
        if gpus is not None and options.nproc > gpus:
            raise OptionError("nproc", f"{options.nproc} with device cuda needs one GPU per rank; this machine has {gpus}")
        return
    cores = os.cpu_count() or 1
    if options.nproc > max(2, cores):
        raise OptionError("nproc", f"{options.nproc} on the CPU: each rank is a process that imports torch and runs the "
                                   f"layer, and this machine has {cores} CPU core(s); use at most {max(2, cores)}")


def gpu_count() -> int | None:
    """GPUs this process may use, without importing torch (None: cannot tell)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else None

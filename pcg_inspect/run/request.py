"""What the parent asks a child to do, and the files a child answers with: one typed record each way.

The request travels as one JSON file (``request.json`` in the child's folder); the answer is files in
that folder, named here once. Progress and stage changes travel on a pipe of their own (fd
``PROTO_FD_ENV``), so nothing the target prints can be mistaken for them. Torch is not imported here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..options import Bisect, TraceOptions

PROTO_FD_ENV = "PCG_INSPECT_PROTO_FD"
"""The fd a child writes its protocol lines to: ``progress\\t<text>`` and ``stage\\t<name>``."""

ROLES = ("trace", "bisect", "rank", "reference", "ops")


class Answer:
    """The files a child writes in its folder (the parent reads them; nothing else crosses)."""

    REPORT = "report.json"
    """The finished report."""
    CHECKPOINT = "checkpoint.json"
    """The report so far, written before replay (a crash or kill in replay still leaves the trace's findings)."""
    ERROR = "error.json"
    """{"kind": usage|target|report|internal, "message", "traceback"}: a typed error instead of a report."""
    EXIT = "exit.json"
    """{"code", "how", "stack"}: the target called os._exit (written just before the process ends)."""
    CRASH = "crash.txt"
    """faulthandler's dump when a fatal signal (segfault, abort) ended the process."""
    STUCK = "stuck.txt"
    """faulthandler's dump of every thread, taken shortly after the deadline (where a stuck child was)."""
    OUTPUT = "output.pt"
    """A rank's eager output (for the single-rank reference)."""
    FINDINGS = "findings.json"
    """The reference's tp_mismatch findings."""
    OPS = "ops.json"
    """The ops audit (``role == "ops"``): one row per op overload."""


@dataclass(frozen=True)
class Request:
    """One child's job."""

    role: str
    """trace (the whole pipeline) | bisect (continue a capture-failure search) | rank (one TP rank) | reference
    (the single-rank TP reference) | ops (audit the ops a target registers and calls)."""
    options: TraceOptions
    tool_version: str
    deadline: float = 0.0
    """Wall-clock time (``time.time()``) by which the whole run must end; 0: no limit. One deadline for every child."""
    rank: int = 0
    world_size: int = 1
    port: int = 0
    """The rendezvous port of the ranks (``role == "rank"``)."""
    bisect: Optional[Bisect] = None
    outputs: tuple[str, ...] = field(default_factory=tuple)
    """The ranks' saved outputs (``role == "reference"``)."""
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    """Op namespaces to audit (``role == "ops"``)."""

    def save(self, folder: Path) -> None:
        """``request.json`` in ``folder``, through the report's serialiser (one JSON form for every record)."""
        from ..report import to_jsonable

        (folder / "request.json").write_text(json.dumps(to_jsonable(self)), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "Request":
        """The inverse of ``save``."""
        from ..report import from_jsonable

        data: Any = json.loads((folder / "request.json").read_text(encoding="utf-8"))
        return from_jsonable(cls, data)

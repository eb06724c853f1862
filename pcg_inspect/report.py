"""The Report: frozen, JSON-safe records that every stage adds to and every view reads.

Keys are public API (CI scripts and ``diff`` read them): add fields, never rename them.
Bump ``SCHEMA_VERSION`` when a field changes meaning or disappears.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import kinds as registry
from .details import CaptureDetails, Details, TargetExitDetails, TimeoutDetails
from .frames import Frame
from .errors import ReportError

if typing.TYPE_CHECKING:
    from .options import TraceOptions

SCHEMA_VERSION = "3"
"""2: typed finding details, the verdict decided from breaks, error findings and replay."""

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class GraphBreak:
    """One graph break, deduplicated over capture sizes and nested frames."""

    category: str
    """data_ptr | missing_fake_impl | opaque_call | data_dependent | side_effect | unsupported_python | other"""
    reason: str
    """Dynamo's explanation, first paragraph."""
    gb_type: str
    """Dynamo's graph-break type, e.g. 'Data pointer comparison'."""
    gb_id: str
    """Registry id such as 'GB0090' when the running torch knows it, else ''."""
    doc_url: str
    """Documentation page for ``gb_id`` when known, else ''."""
    file: str
    """The user file to edit."""
    line: int
    """The line to edit."""
    function: str
    """Function holding that line."""
    code: str
    """That source line."""
    user_stack: tuple[Frame, ...]
    """Outermost first, down to the frame Dynamo stopped in (library frames included)."""
    hint: str
    """One-line PCG-specific fix."""
    fix: str = ""
    """Replacement code to paste, where one can be derived."""
    op: str = ""
    """The op involved (missing fake impls), else ''."""
    capture_sizes: tuple[int, ...] = ()
    """Token counts at which this break was seen."""
    occurrences: int = 1
    """How many raw break events were merged into this one."""
    fatal: bool = False
    """Dynamo raised instead of breaking: the whole frame fell back to eager."""


@dataclass(frozen=True)
class Finding:
    """A problem (or note) that explains a capture failure or a silent difference."""

    kind: str
    """Finding kind; ``pcg-inspect --explain KIND`` documents each."""
    severity: str
    """error | warning | info. Errors make the target not capturable."""
    message: str
    """What is wrong, one sentence."""
    file: str = ""
    """File to edit ('' when not tied to source)."""
    line: int = 0
    """Line to edit (0 when unknown)."""
    function: str = ""
    """Function holding that line."""
    code: str = ""
    """That source line."""
    op: str = ""
    """Op name where there is one."""
    hint: str = ""
    """One-line fix."""
    fix: str = ""
    """Paste-ready code, where one can be derived."""
    details: Details = field(default_factory=Details)
    """The kind's typed record (declared with the kind, ``kinds.py``); a plain object in JSON."""

    def __post_init__(self) -> None:
        expected = registry.details_of(self.kind)
        if not isinstance(self.details, expected):
            raise TypeError(f"a {self.kind} finding carries {expected.__name__}, got {type(self.details).__name__}")


@dataclass(frozen=True)
class Node:
    """One node of a captured FX graph, enough to redraw it."""

    name: str
    op: str
    """FX opcode: placeholder, get_attr, call_function, call_method, call_module, output."""
    target: str
    """Normalised target: op name, method or module type."""
    shape: str
    """Output shape and dtype, '' when not a tensor."""
    inputs: tuple[str, ...]
    """Names of the nodes this one reads."""
    piece: int
    """Index of the piece it belongs to (-1 for placeholders and output)."""
    is_weight: bool = False
    """A parameter/buffer placeholder or get_attr (hidden in pictures by default)."""


@dataclass(frozen=True)
class Graph:
    """One FX graph Dynamo handed to the backend."""

    index: int
    compile_id: str
    """Dynamo's compile id, 'frame/recompile' such as '0/1'."""
    function: str
    """Name of the code object compiled (resume functions keep Dynamo's name)."""
    file: str
    line: int
    """First line of that function."""
    num_nodes: int
    """Call nodes (no placeholders / output)."""
    ops: tuple[str, ...]
    """Op of each call node, in order."""
    capture_sizes: tuple[int, ...]
    """Token counts that ran this graph."""
    input_shapes: tuple[str, ...]
    """Shapes of its tensor placeholders (symbolic where dynamic)."""
    nodes: tuple[Node, ...] = ()
    """All nodes, for rendering."""


@dataclass(frozen=True)
class Guard:
    """One guard Dynamo installed."""

    type: str
    """Guard type, e.g. TENSOR_MATCH, SHAPE_ENV, EQUALS_MATCH, ID_MATCH."""
    source: str
    """What it guards, e.g. L['x'] or L['self'].step."""
    code: str
    """The check, e.g. L['self'].step == 0."""


@dataclass(frozen=True)
class GuardSet:
    """Guards of one compiled frame."""

    compile_id: str
    function: str
    file: str
    line: int
    graph: Optional[int]
    """Index into ``graphs`` (None when the frame produced no graph)."""
    guards: tuple[Guard, ...]

    def count_by_type(self) -> dict[str, int]:
        """Number of guards of each type."""
        out: dict[str, int] = {}
        for g in self.guards:
            out[g.type] = out.get(g.type, 0) + 1
        return out


@dataclass(frozen=True)
class Recompile:
    """One recompilation and the guard failures that caused it."""

    compile_id: str
    """The new compile id."""
    function: str
    file: str
    line: int
    capture_size: Optional[int]
    """Token count being run when it happened."""
    call: int
    """1 for warm-up, 2.. for capture calls at that size."""
    reasons: tuple[str, ...]
    """Guard failures, e.g. "tensor 'x' size mismatch at index 0. expected 8, actual 1"."""
    source_file: str = ""
    """User file of the failed guard's origin, when Dynamo gives one."""
    source_line: int = 0


@dataclass(frozen=True)
class Piece:
    """One piece of a split graph: captured (CUDA graph) or split (eager)."""

    graph: int
    """Index into ``graphs``."""
    index: int
    """Position within the split graph (sglang's submod_<index>)."""
    is_split: bool
    """True for a split-op piece, which runs eagerly."""
    num_nodes: int
    ops: tuple[str, ...]
    input_shapes: tuple[str, ...]
    output_shapes: tuple[str, ...]
    structure: str = ""
    """A digest of the piece's code: its ops, how they are wired, constants and shapes (weights by shape, not
    value). Pieces with the same digest are the same graph — an engine could compile and capture one for all (the
    repeated layers of a model: ``Summary.num_distinct_pieces``)."""


@dataclass(frozen=True)
class PieceReplay:
    """Replay of one piece at one capture size."""

    index: int
    is_split: bool
    status: str
    """ok | mismatch | capture_failed | error | skipped"""
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    eager_us: float = 0.0
    graph_us: float = 0.0
    """CUDA-graph replay time (0 on CPU, where no graph is captured)."""
    message: str = ""


@dataclass(frozen=True)
class SizeReplay:
    """Replay of all pieces of the main graph at one capture size."""

    capture_size: int
    graph: int
    status: str
    """ok when every piece and the whole model matched eager."""
    pieces: tuple[PieceReplay, ...]
    max_abs_err: float = 0.0
    """Whole model vs eager."""
    max_rel_err: float = 0.0
    rmse_ratio: float = 0.0
    """RMSE(compiled vs ref) / RMSE(eager vs ref); <= threshold is a pass (GPU only)."""
    peak_mem_bytes: int = 0
    """GPU: peak memory allocated while capturing and checking this size (weights included)."""
    message: str = ""
    warmup_ms: float = 0.0
    """GPU: the two eager warm-up forwards."""
    capture_ms: float = 0.0
    """GPU: capturing every piece (the engine's capture cost at this size)."""
    check_ms: float = 0.0
    """GPU: fresh-input replay, per-piece eager runs, fp64 reference and comparisons (the tool's own work)."""
    pool_bytes: int = 0
    """GPU: memory the shared CUDA-graph pool holds after this size's capture (0 with --isolate)."""


@dataclass(frozen=True)
class Replay:
    """The replay section."""

    device: str
    mode: str
    """'cpu' (pieces re-run, no CUDA graph) | 'cuda-graph' | 'cuda-graph-isolated' (tc_piecewise) | 'breakable' |
    'full' (the module's forward captured as sglang's breakable / full backend does)"""
    status: str
    """ok | mismatch | capture_failed | error | skipped"""
    sizes: tuple[SizeReplay, ...]
    note: str = ""


@dataclass(frozen=True)
class SizeCompile:
    """What tracing one capture size cost (the compiled forward called twice, as the engine's warm-up and capture)."""

    size: int
    first_s: float
    """The first call: Dynamo's trace and the backend's compile when a graph is compiled for this size, plus a run."""
    run_s: float
    """The last call: a run of the compiled code alone."""
    graphs_compiled: int
    """Graphs compiled during this size's calls (0: a graph of an earlier size served it)."""

    @property
    def compile_s(self) -> float:
        return max(0.0, self.first_s - self.run_s) if self.graphs_compiled else 0.0


@dataclass(frozen=True)
class SizeCapture:
    """GPU, ``plan``: one size of the engine's capture pass (``replay.engine``), nothing of ours in between."""

    size: int
    graph: int
    graphs: int
    """CUDA graphs captured at this size (the captured pieces)."""
    warmup_ms: float
    """The compile pass's forward at this size (the current stream)."""
    capture_ms: float
    """The capture session at this size: its warm-up forward and the capture forward."""
    pool_bytes: int
    """What the pool shared by every size and piece holds after this size (it only grows)."""
    peak_extra_bytes: int
    """Peak memory allocated since the pass began, above what was allocated when it began (the weights, the inputs):
    the pool and the transient activations."""
    status: str = "ok"
    """ok | capture_failed | error (not run: the CUDA context broke at a larger size)."""
    message: str = ""


@dataclass(frozen=True)
class PlanSample:
    """One traced sample of a model: ``layers`` layers over the whole schedule."""

    layers: int
    compile_s: float
    """Seconds compiling (``SizeCompile.compile_s`` summed over the schedule)."""
    graphs: int
    captured_pieces: int
    distinct_pieces: int
    trace_s: float
    """The trace stage's wall time."""
    weight_bytes: int = 0
    segments: int = 0
    """breakable's segments per size (0: breakable not planned)."""
    distinct_segments: int = 0
    sizes: tuple[int, ...] = ()
    """The sizes this sample traced (a few of the schedule, or all of it)."""
    captures: tuple[SizeCapture, ...] = ()
    """GPU: the engine's capture pass at each of ``sizes``, largest first (empty on a CPU)."""
    compiler_setup_s: float = 0.0
    """Dynamo's once-per-process setup, paid before ``compile_s`` was timed (the engine pays it once)."""

    @property
    def capture_s(self) -> float:
        return sum(c.capture_ms for c in self.captures) / 1e3

    @property
    def pool_bytes(self) -> int:
        return max((c.pool_bytes for c in self.captures), default=0)


@dataclass(frozen=True)
class PlanGraphs:
    """The CUDA graphs one backend captures over the schedule, for the whole model."""

    backend: str
    per_size: int
    """tc_piecewise: captured pieces; breakable: segments; full: 1."""
    shared_per_size: int
    """The same if identical ones shared one graph (sglang's breakable dedups identical segment executables)."""
    total: int
    """per_size x sizes."""
    shared_total: int


@dataclass(frozen=True)
class Plan:
    """``pcg-inspect plan``: the engine's schedule for the whole model, measured on samples and forecast."""

    phase: str
    backends: tuple[str, ...]
    schedule: tuple[int, ...]
    """The sizes the engine captures (``schedule.engine_sizes`` or --tokens)."""
    layers_total: int
    """The model's layers (0: not a model target, nothing to forecast across layers)."""
    samples: tuple[PlanSample, ...]
    sizes: tuple[SizeCompile, ...]
    """Per size, of the largest sample."""
    forecast_weight_bytes: int
    """The whole model's parameters and buffers, on the same line through the samples (in the dtype traced)."""
    forecast_compile_s: float
    """tc_piecewise's compile seconds for ``layers_total`` layers, from a straight line through the samples, plus
    Dynamo's once-per-process setup (breakable and full compile nothing)."""
    graphs: tuple[PlanGraphs, ...]
    """Per backend planned: the CUDA graphs captured over the schedule."""
    fit: str
    """How the forecast was made, in words."""
    notes: tuple[str, ...] = ()
    sampled_sizes: tuple[int, ...] = ()
    """The sizes the samples traced (``--sample-sizes``): the others are interpolated between them."""
    checked_sizes: tuple[int, ...] = ()
    """GPU: the sizes replayed against eager (the report's ``replay``); the others were captured, not checked."""
    forecast_warmup_s: float = 0.0
    """GPU, tc_piecewise: the compile pass's forwards over the schedule, whole model."""
    forecast_capture_s: float = 0.0
    """GPU, tc_piecewise: the capture session over the schedule (a warm-up and a capture forward per size)."""
    forecast_pool_bytes: int = 0
    """GPU, tc_piecewise: the shared CUDA-graph pool after the whole schedule, per GPU."""
    forecast_peak_bytes: int = 0
    """GPU, tc_piecewise: peak memory allocated during the capture pass, per GPU: the weights and the pass's own
    peak above them (``SizeCapture.peak_extra_bytes``)."""
    memory_fit: str = ""
    """GPU: the pool's fit in the share of the GPU sglang leaves outside --mem-fraction-static, in words."""
    fits: Optional[bool] = None
    """GPU: whether the forecast pool fits that share and the weights the static share (None: not measured)."""
    mem_fraction_static: float = 0.0
    gpu_bytes: int = 0


@dataclass(frozen=True)
class BackendVerdict:
    """One capture backend's verdict (``decide`` for that backend)."""

    backend: str
    capturable: bool
    verdict: str = ""
    """What decided it, one line ('' when capturable)."""
    num_problems: int = 0
    captured: bool = False
    """CUDA graphs were captured for it (on a GPU); False: predicted from the analysis (on the CPU, capture needs
    --device cuda)."""


@dataclass(frozen=True)
class Summary:
    num_graphs: int
    num_graph_breaks: int
    num_findings: dict[str, int]
    """Count per severity."""
    num_pieces: int
    num_recompiles: int
    capturable: bool
    """The verdict for ``backend`` — sglang's default backend for the phase when it was judged (prefill:
    breakable, decode: full), else for every backend judged: no problem that blocks it (``decide``)."""
    replay_status: str = ""
    """Replay verdict, '' when replay did not run."""
    verdict: str = ""
    """What decided ``capturable``, one line ('' when capturable)."""
    num_problems: int = 0
    pieces_per_graph: tuple[int, ...] = ()
    """Pieces of each graph, in graph order (``num_pieces`` is their sum)."""
    num_split_pieces: int = 0
    """Pieces that run eagerly (a split op each), across all graphs."""
    num_distinct_pieces: int = 0
    """Captured pieces that differ in code (``Piece.structure``): the graphs an engine must compile and capture per
    size if identical pieces were shared (the repeated layers of a model are one)."""
    backends: tuple[BackendVerdict, ...] = ()
    """Each backend judged (``--backend``), with its own verdict."""
    backend: str = ""
    """The backend ``capturable`` is the verdict of: the engine's default for the phase when judged; '' when it
    was not judged (then ``capturable`` is every backend's)."""
    all_capturable: bool = True
    """Every backend judged is capturable: what the exit code, ``assert_capturable`` and the headline follow."""

    def split_verdict(self) -> Optional[tuple[str, str]]:
        """When the engine's default backend captures and another backend judged does not: (the failing backends,
        the first one's reason without its name), for the headline every view shows; else None."""
        if self.all_capturable or not (self.backend and self.capturable):
            return None
        failing = [b for b in self.backends if not b.capturable]
        return ", ".join(b.backend for b in failing), failing[0].verdict

    def counts_text(self) -> str:
        """The graph and piece counts as every view says them: '2 graph(s) · 3 piece(s) per graph, 1 split' when
        each graph has as many pieces, else '16 graph(s) · 16 piece(s) in all, 0 split'."""
        per = set(self.pieces_per_graph)
        graphs = max(self.num_graphs, 1)
        if len(per) == 1:
            return (f"{self.num_graphs} graph(s) · {per.pop()} piece(s) per graph, "
                    f"{self.num_split_pieces // graphs} split")
        return f"{self.num_graphs} graph(s) · {self.num_pieces} piece(s) in all, {self.num_split_pieces} split"
    """Graph breaks + error findings + failed replayed pieces (``Report.problems()``)."""


@dataclass(frozen=True)
class Environment:
    tool_version: str
    torch_version: str
    python_version: str
    platform: str
    device: str
    dtype: str
    command: str
    target: str
    capture_sizes: tuple[int, ...]
    dynamic: str
    """How the token dim was marked: maybe (sglang) | unbacked | static."""
    sglang_version: str = ""
    weight_bytes: int = 0
    """The target module's parameters and buffers, in bytes, as built (this rank's shard under --nproc)."""
    gpu_bytes: int = 0
    """GPU runs: the device's total memory (``torch.cuda.get_device_properties``); 0 on a CPU."""
    world_size: int = 1
    """Ranks traced (--nproc)."""
    rank: int = 0
    """This report's rank (0 for the merged report)."""
    backends: tuple[str, ...] = ("tc_piecewise",)
    """The capture backends judged (``--backend``; by default the phase's engine default and tc_piecewise)."""
    phase: str = "prefill"
    """prefill | decode (``--phase``)."""
    default_backend: str = "breakable"
    """sglang 0.5.23's default backend for the phase on CUDA (prefill: breakable, decode: full)."""

    @classmethod
    def of_run(cls, options: "TraceOptions", **measured: Any) -> "Environment":
        """The environment of a run of ``options``: what the options say, this interpreter and platform, and what
        the run measured (``torch_version``, ``device`` as named by torch, ``capture_sizes`` actually used, ...)."""
        import platform

        from . import __version__

        base = dict(tool_version=__version__, torch_version="", python_version=platform.python_version(),
                    platform=f"{platform.system()} {platform.machine()}", device=options.device,
                    dtype=options.dtype or "as built", command=options.command, target=options.target,
                    capture_sizes=options.sizes, dynamic=options.dynamic, backends=options.judged_backends, phase=options.phase,
                    default_backend=options.default_backend)
        return cls(**{**base, **measured})


@dataclass(frozen=True)
class Report:
    """The whole result of one ``pcg-inspect trace`` run."""

    schema_version: str
    environment: Environment
    summary: Summary
    graph_breaks: tuple[GraphBreak, ...]
    findings: tuple[Finding, ...]
    graphs: tuple[Graph, ...]
    guards: tuple[GuardSet, ...]
    recompiles: tuple[Recompile, ...]
    split_ops: tuple[str, ...]
    pieces: tuple[Piece, ...]
    replay: Optional[Replay] = None
    warnings: tuple[str, ...] = ()
    """Things the tool could not do (a guard it could not decode, replay skipped), never fatal."""
    timings_s: dict[str, float] = field(default_factory=dict)
    """Wall time per stage."""
    ranks: tuple["Report", ...] = ()
    """With --nproc N: every rank's own report (graph nodes dropped), rank 0 first."""
    backend_replays: tuple[Replay, ...] = ()
    """GPU only: the breakable / full captures asked for (``mode`` names the backend); ``replay`` is tc_piecewise's."""
    compile_sizes: tuple[SizeCompile, ...] = ()
    """What tracing each capture size cost, largest first."""
    capture_pass: tuple[SizeCapture, ...] = ()
    """GPU ``plan`` only: the engine's capture pass over every size (``replay`` then checks a few sizes only)."""
    segments: tuple[str, ...] = ()
    """breakable judged: its segments at the largest size, in order, as digests of their ops (equal digests: the
    same graph, which sglang's executable dedup can share); one more than the break-point calls."""
    plan: Optional[Plan] = None
    """``pcg-inspect plan`` only: the schedule's cost for the whole model."""

    @property
    def capturable(self) -> bool:
        """The verdict for sglang's default backend of the phase (``summary.capturable``; every backend judged when
        that one was not)."""
        return self.summary.capturable

    @property
    def all_capturable(self) -> bool:
        """Every backend judged is capturable (``summary.all_capturable``): what the exit code follows."""
        return self.summary.all_capturable

    def verdict_for(self, backend: str) -> Optional[BackendVerdict]:
        """One backend's verdict (None when it was not judged)."""
        return next((v for v in self.summary.backends if v.backend == backend), None)

    def problems(self, backend: Optional[str] = None) -> list["Problem"]:
        """Everything that makes the target not capturable, in order: breaks, error findings, failed pieces; for
        one backend, or (None) for every backend judged, each problem once."""
        names = (backend,) if backend else self.environment.backends
        out: list[Problem] = []
        for name in names:
            for p in problems(self.graph_breaks, self.findings, replay_of(self, name), self.graphs, name):
                if p not in out:
                    out.append(p)
        return out

    def to_text(self, width: int = 120) -> str:
        """The terminal view as plain text (no colour), for logs and assertion messages.

        The view is ``render.console``'s, which registers itself (``register_text_view``) when imported; the
        package's public names (``pcg_inspect.inspect``, ``pcg_inspect.Report``, ...) import it. The model never
        imports a view."""
        if not _TEXT_VIEW:
            raise RuntimeError("no text view is registered: import pcg_inspect.render.console (importing a public name "
                               "from the pcg_inspect package does)")
        return _TEXT_VIEW[0](self, width)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        return to_jsonable(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> "Report":
        """Rebuild a Report from ``to_dict`` output.

        Raises:
            ReportError: not a report, unknown schema version, or a field of the wrong shape.
        """
        if not isinstance(data, dict) or "schema_version" not in data:
            raise ReportError("not a pcg-inspect report (no schema_version)")
        if str(data["schema_version"]) != SCHEMA_VERSION:
            raise ReportError(
                f"report schema_version {data['schema_version']!r} is not supported "
                f"(this pcg-inspect reads {SCHEMA_VERSION!r}; trace the target again)"
            )
        try:
            return from_jsonable(cls, data)
        except (TypeError, ValueError, KeyError) as exc:
            raise ReportError(f"malformed report: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "Report":
        """Parse JSON text into a Report (ReportError on bad JSON)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"malformed report JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
        return cls.from_dict(data)


_TEXT_VIEW: list[Callable[[Report, int], str]] = []
"""The plain-text view ``Report.to_text`` delegates to (one slot, filled by ``render.console``)."""


def register_text_view(view: Callable[[Report, int], str]) -> None:
    """Make ``view(report, width)`` the text of ``Report.to_text`` (a view calls this; the model imports no view)."""
    _TEXT_VIEW[:] = [view]


def load_report(path: str) -> Report:
    """Read a report file.

    Raises:
        ReportError: missing, unreadable or malformed.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ReportError(f"report file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read report {path}: {exc}") from None
    try:
        return Report.from_json(text)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None


def count_findings(findings: typing.Iterable[Finding]) -> dict[str, int]:
    """Count findings per severity (every severity present, zeros included)."""
    out = {s: 0 for s in SEVERITIES}
    for f in findings:
        out[f.severity] = out.get(f.severity, 0) + 1
    return out


@dataclass(frozen=True)
class Problem:
    """One thing that makes a target not capturable (``Report.problems()``)."""

    source: str
    """graph_break | finding | replay."""
    title: str
    """One line: what, where."""
    category: str = ""
    """The break category, the finding kind, or the replay status."""
    file: str = ""
    line: int = 0
    hint: str = ""
    fix: str = ""


FAILED_REPLAY = ("capture_failed", "mismatch", "error")
"""Replay statuses that make a target not capturable."""
_REPLAY_WORDS = {"capture_failed": "failed CUDA graph capture", "mismatch": "differs from eager after replay",
                 "error": "raised during replay"}


def problems(breaks: typing.Sequence[GraphBreak], findings: typing.Sequence[Finding], replay: Optional["Replay"],
             graphs: typing.Sequence[Graph] = (), backend: str = "tc_piecewise") -> list[Problem]:
    """Every graph break, every error finding, every replayed piece that failed, in that order, for one capture
    backend: a graph break and Dynamo's own problems block only tc_piecewise (``kinds.blocked_backends``)."""
    out = [Problem("graph_break", f"graph break ({b.category}) at {_at(b.file, b.line)}" + (f" in {b.function}" if b.function else ""),
                   b.category, b.file, b.line, b.hint, b.fix) for b in breaks if backend in registry.blocked_backends(b)]
    functions = {g.index: g.function for g in graphs}
    mine = [f for f in findings if backend in registry.blocked_backends(f)]
    placed = {(d.capture_size, d.graph, d.piece) for d in (f.details for f in mine) if isinstance(d, CaptureDetails)}
    out += [_finding_problem(f, functions) for f in mine if f.severity == "error"]
    return out + [p for p in _replay_problems(replay, functions, placed)]


def replay_of(report: "Report", backend: str) -> Optional["Replay"]:
    """The replay section of one backend (tc_piecewise: ``report.replay``)."""
    if backend == "tc_piecewise":
        return report.replay
    return next((r for r in report.backend_replays if r.mode == backend), None)


def _finding_problem(f: Finding, functions: dict[int, str]) -> Problem:
    d = f.details
    if isinstance(d, CaptureDetails):
        of = f" of {functions[d.graph]}" if d.graph in functions else ""
        what = registry.get(f.kind).summary or f.kind
        at = f" ({f.op} at {_at(f.file, f.line)})" if f.file else (f" ({f.op})" if f.op else "")
        title = f"piece {d.piece}{of} {what} at {d.capture_size} tokens{at}"
    elif isinstance(d, (TimeoutDetails, TargetExitDetails)):  # how the run stopped says it all
        title = f.message
    else:
        title = f"{f.kind}" + (f" {f.op}" if f.op else "") + (f" at {_at(f.file, f.line)}" if f.file else f": {f.message[:100]}")
    return Problem("finding", title, f.kind, f.file, f.line, f.hint, f.fix)


def _replay_problems(replay: Optional["Replay"], functions: dict[int, str], placed: set[tuple[int, int, int]]) -> list[Problem]:
    """Failed pieces no capture_failed / replay_mismatch finding explains already."""
    if replay is None:
        return []
    if not replay.sizes and replay.status in FAILED_REPLAY:
        return [Problem("replay", f"replay {replay.status}: {replay.note[:160]}", replay.status)]
    out = []
    for s in replay.sizes:
        of = f" of {functions[s.graph]}" if s.graph in functions else ""
        failed = [p for p in s.pieces if p.status in FAILED_REPLAY]
        for p in failed:
            if (s.capture_size, s.graph, p.index) in placed:
                continue
            out.append(Problem("replay", f"piece {p.index}{of} {_REPLAY_WORDS[p.status]} at {s.capture_size} tokens", p.status))
        if s.status in FAILED_REPLAY and not failed:
            what = s.message or _REPLAY_WORDS[s.status]
            out.append(Problem("replay", f"the graph{of} at {s.capture_size} tokens: {what}", s.status))
    return out


def decide(breaks: typing.Sequence[GraphBreak], findings: typing.Sequence[Finding], replay: Optional["Replay"],
           graphs: typing.Sequence[Graph] = (), backend: str = "tc_piecewise") -> tuple[bool, str, int]:
    """The verdict, decided in one place: (capturable, what decided it, number of problems).

    Not capturable when there is any graph break (sglang compiles with fullgraph=True), any error
    finding, or any replayed piece that failed capture, differs from eager (stale addresses
    included) or raised. Warnings and infos never decide it.
    """
    found = problems(breaks, findings, replay, graphs, backend)
    if not found:
        return True, "", 0
    more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
    return False, found[0].title + more, len(found)


def build_summary(graphs: typing.Sequence[Graph], breaks: typing.Sequence[GraphBreak], findings: typing.Sequence[Finding],
                  pieces: typing.Sequence[Piece], recompiles: typing.Sequence[Recompile], replay: Optional["Replay"],
                  backends: typing.Sequence[str] = ("tc_piecewise",), backend_replays: typing.Sequence["Replay"] = (),
                  default_backend: str = "") -> Summary:
    """The summary of a report's content, one verdict per backend judged. ``capturable`` is ``default_backend``'s
    verdict when it was judged (else every backend's), ``all_capturable`` every backend's, and the verdict line is
    the first failing backend's (named when more than one is judged)."""
    verdicts = []
    for name in backends:
        rp = replay if name == "tc_piecewise" else next((r for r in backend_replays if r.mode == name), None)
        capturable, verdict, num = decide(breaks, findings, rp, graphs, name)
        captured = rp is not None and rp.mode not in ("cpu", "bisect") and bool(rp.sizes)
        verdicts.append(BackendVerdict(name, capturable, verdict, num, captured))
    failing = [v for v in verdicts if not v.capturable]
    first = failing[0] if failing else None
    main = next((v for v in verdicts if v.backend == default_backend), None)
    verdict = "" if first is None else (first.verdict if len(verdicts) == 1 else f"{first.backend}: {first.verdict}")
    return Summary(
        num_graphs=len(graphs), num_graph_breaks=len(breaks), num_findings=count_findings(findings),
        num_pieces=len(pieces), num_recompiles=len(recompiles),
        capturable=main.capturable if main is not None else not failing,
        replay_status=replay.status if replay is not None else "", verdict=verdict,
        num_problems=max((v.num_problems for v in verdicts), default=0),
        pieces_per_graph=tuple(sum(1 for p in pieces if p.graph == g.index) for g in graphs),
        num_split_pieces=sum(1 for p in pieces if p.is_split), backends=tuple(verdicts),
        num_distinct_pieces=len({p.structure or (p.graph, p.index) for p in pieces if not p.is_split}),
        backend=main.backend if main is not None else "", all_capturable=not failing,
    )


def with_summary(report: "Report", **changes: Any) -> "Report":
    """A copy of ``report`` with fields replaced and the summary (verdict included) recomputed."""
    r = dataclasses.replace(report, **changes)
    return dataclasses.replace(r, summary=build_summary(r.graphs, r.graph_breaks, r.findings, r.pieces, r.recompiles, r.replay,
                                                        r.environment.backends, r.backend_replays,
                                                        r.environment.default_backend))


def _at(file: str, line: int) -> str:
    name = file.replace("\\", "/").rsplit("/", 1)[-1] or "?"
    return f"{name}:{line}" if line else name


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples and floats as JSON-safe values (tuples -> lists, NaN/inf -> strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)  # JSON has no NaN/inf
    return obj


_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls)
    return _HINTS_CACHE[cls]


def from_jsonable(tp: Any, value: Any) -> Any:
    """Rebuild a value of type ``tp`` from ``to_jsonable`` output (TypeError / KeyError on a wrong shape)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return from_jsonable(inner[0], value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"{tp.__name__} expects an object, got {type(value).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                hint = hints[f.name]
                if tp is Finding and f.name == "details":  # the kind says which record
                    hint = registry.details_of(str(value.get("kind")))
                kwargs[f.name] = from_jsonable(hint, value[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f"{tp.__name__}.{f.name} is missing")
        return tp(**kwargs)  # unknown keys (newer minor fields) are ignored
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return tuple(from_jsonable(args[0], v) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return dict(value) if args[1] is Any else {k: from_jsonable(args[1], v) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
            return float(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    return value


def exit_code(report: Report) -> int:
    """What a front end exits with for a report: 4 timeout, 2 the target ended the process, 1 not capturable under
    a backend judged, 0 capturable under every one."""
    from .errors import EXIT_OK, EXIT_PROBLEMS

    forced = [code for f in report.findings if (code := registry.get(f.kind).exit_code) is not None]
    if forced:
        return max(forced)  # a kind that stopped the run (kinds.py): timeout 4 over target_exit 2
    return EXIT_OK if report.summary.all_capturable else EXIT_PROBLEMS

"""What a run was asked to do: one record, declared once, from which every front end derives its options.

``TraceOptions`` is the run request. Each user-facing field carries a ``Flag`` in its metadata: its
command-line spelling, help text, metavar, parser and choices. From that one declaration come

- the CLI options of ``trace``, ``diff`` and ``fix`` (``cli._utils.TRACE_OPTIONS``),
- the keyword arguments of ``pcg_inspect.inspect()`` (same names as the fields, same defaults),
- the pytest ini keys (``pcg_inspect_<field>``),

so a new option is one field. Every child process receives the record as ``to_dict()`` JSON and
rebuilds it with ``from_dict``. Only ``validate()`` validates; its errors (``OptionError``) name the
field, and the CLI spells them as the flag. Torch is not imported here.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional

from .errors import UsageError

DEFAULT_SIZES: tuple[int, ...] = (1, 8, 64)
"""Decode, a small batch, a prefill chunk."""
DEFAULT_CAPTURE_SIZES = DEFAULT_SIZES
"""The old name of ``DEFAULT_SIZES``."""
DEFAULT_TIMEOUT_S = 600.0
"""The whole run, children and ranks included; 0 means no limit."""
DYNAMIC_MODES = ("maybe", "unbacked", "static")
PHASES = ("prefill", "decode")
ATTN_MODES = ("split", "sdpa", "eager")
FLOAT_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}
"""Accepted dtype spellings -> torch dtype names (floating types a layer runs in)."""


class OptionError(UsageError):
    """A bad option value. ``field`` is the TraceOptions (or ModelOptions) field; the message reads
    '<name> <text>', with the field's name from the API and its flag from the CLI (``spelled``)."""

    def __init__(self, field_name: str, text: str) -> None:
        super().__init__(f"{field_name} {text}")
        self.field = field_name
        self.text = text

    def spelled(self, name: str) -> str:
        """The message with the option named as ``name`` (a CLI flag)."""
        return f"{name} {self.text}"


@dataclass(frozen=True)
class Flag:
    """How one field is spelled outside Python: the command line, the pytest ini, the help."""

    decls: tuple[str, ...]
    """Command-line spellings, e.g. ("--tokens", "-t")."""
    help: str
    metavar: str = ""
    negate: bool = False
    """A bool field whose flag turns it off: ``--no-replay`` sets ``replay=False``."""
    parse: Optional[Callable[[str], Any]] = None
    """Text (a CLI string option, an ini value) -> the field's value; None: the text is the value."""
    show: Optional[Callable[[Any], str]] = None
    """The field's default as the CLI shows and takes it (``(1, 8, 64)`` -> ``"1,8,64"``)."""
    repeat: bool = False
    """A repeatable flag: each use adds one item to a tuple."""
    ini: bool = True
    """Has a pytest ini key ``pcg_inspect_<field>``."""

    @property
    def flag(self) -> str:
        return self.decls[0]


def _flag(default: Any = dataclasses.MISSING, **spec: Any) -> Any:
    return field(default=default, metadata={"flag": Flag(**spec)})


def parse_sizes(text: str) -> tuple[int, ...]:
    """'1,8,512' -> (1, 8, 512), duplicates dropped; 'prefill' / 'decode' (':MAX' optional) -> sglang's capture
    schedule of that phase (``schedule.engine_sizes``: 42 sizes up to 2048 for prefill)."""
    phase, sep, limit = text.strip().partition(":")
    if phase in PHASES:
        if sep and not (limit.isascii() and limit.isdigit() and int(limit) > 0):
            raise OptionError("sizes", f"expects {phase}:MAX with a positive MAX, got {text!r}")
        from .schedule import engine_sizes

        sizes_of_phase = engine_sizes(phase, int(limit) if sep else 0)
        if not sizes_of_phase:
            raise OptionError("sizes", f"{text!r} leaves no size of sglang's {phase} schedule")
        return sizes_of_phase
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or int(part) <= 0:
            raise OptionError("sizes", f"expects positive integers separated by commas, got {text!r}")
        sizes.append(int(part))
    if not sizes:
        raise OptionError("sizes", "needs at least one size")
    return tuple(dict.fromkeys(sizes))


BACKENDS = ("tc_piecewise", "breakable", "full")
"""sglang 0.5.23's CUDA-graph capture backends (``cuda_graph_config.Backend``), in the order verdicts are shown."""
ENGINE_DEFAULT_BACKEND = {"prefill": "breakable", "decode": "full"}
"""sglang 0.5.23's backend for each phase on CUDA when nothing is configured (``CudaGraphConfig``: decode ->
full, prefill -> ``default_prefill_backend()``, breakable on CUDA). tc_piecewise is opt-in there."""


def default_backends(phase: str) -> tuple[str, ...]:
    """What a run judges when no backend is asked for: the engine's default for the phase, and tc_piecewise."""
    return normalise_backends((ENGINE_DEFAULT_BACKEND.get(phase, "breakable"), "tc_piecewise"))


def parse_backends(text: str) -> tuple[str, ...]:
    """'breakable,full' / 'all' -> backend names (checked by ``validate``)."""
    return normalise_backends(tuple(part.strip() for part in text.split(",")))


def normalise_backends(names: tuple[str, ...]) -> tuple[str, ...]:
    """Comma lists split, 'all' expanded, duplicates dropped, in BACKENDS order; none given: ()."""
    flat = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    if "all" in flat:
        flat = [n for n in flat if n != "all"] + list(BACKENDS)
    known = [b for b in BACKENDS if b in flat]
    unknown = [n for n in dict.fromkeys(flat) if n not in BACKENDS]
    return tuple(known + unknown)


parse_capture_sizes = parse_sizes
"""The old name of ``parse_sizes``."""


def parse_bool(text: str) -> bool:
    """An ini value: true/false, yes/no, on/off, 1/0."""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"expected true or false, got {text!r}")


def _parse_number(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise UsageError(f"expected a number, got {text!r}") from None

    return parse


def parse_layers(text: str) -> list[int]:
    """'0' / '0-3' / '1,5' -> layer indices."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise OptionError("layers", f"expects indices like 0, 0-3 or 1,5; got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise OptionError("layers", f"range {part!r} is empty")
        out.extend(range(lo, hi + 1))
    return out


@dataclass(frozen=True)
class ModelOptions:
    """How to build the layers of a model target (file targets refuse them)."""

    layers: str = _flag("0", decls=("--layers",), metavar="IDS",
                        help="Model targets: decoder layers to build, e.g. 0, 0-3, 1,5.", ini=False)
    """'0', '0-3' or '1,5': decoder layer indices, run in sequence."""
    num_layers: int = _flag(0, decls=("--num-layers",), metavar="K", parse=_parse_number(int), ini=False,
                            help="Model targets: build the whole model with K layers (embeddings + final norm).")
    """> 0: the whole model with that many layers (embeddings, layers, final norm)."""
    attn: str = _flag("split", decls=("--attn",), metavar="MODE", ini=False,
                      help="Model targets: split (pcg_inspect::attention split op), sdpa or eager.")
    """split (pcg_inspect::attention split op) | sdpa | eager."""
    overrides: tuple[str, ...] = _flag((), decls=("--override",), metavar="KEY=VALUE", repeat=True, ini=False,
                                       help="Model targets: config key=value (JSON value), repeatable.")
    """key=value config overrides (JSON values), like sglang's --json-model-override-args."""

    def is_default(self) -> bool:
        """True when no model option was changed from its default."""
        return self == ModelOptions()

    def validate(self) -> "ModelOptions":
        """Check each value (OptionError naming the field); returns self."""
        if self.attn not in ATTN_MODES:
            raise OptionError("attn", f"must be split, sdpa or eager, got {self.attn!r}")
        if self.num_layers < 0:
            raise OptionError("num_layers", f"must be 0 or more, got {self.num_layers}")
        parse_layers(self.layers)
        for item in self.overrides:
            key, sep, _ = item.partition("=")
            if not sep or not key.strip():
                raise OptionError("overrides", f"expects key=value, got {item!r}")
        return self


@dataclass(frozen=True)
class TraceOptions:
    """One ``trace`` run. Frozen; ``dataclasses.replace`` makes variants. Field order is ``--help``'s order."""

    target: str
    """file.py:factory, package.module:factory, or a model (bundled name, folder, org/name)."""
    sizes: tuple[int, ...] = _flag(DEFAULT_SIZES, decls=("--tokens", "-t"), metavar="N,N,...", parse=parse_sizes,
                                   show=lambda v: ",".join(str(s) for s in v),
                                   help="Capture sizes (token counts), comma-separated, or the engine's schedule: "
                                        "prefill[:MAX] (4..2048, 42 sizes) or decode[:MAX].")
    """Capture sizes: token counts, each traced, observed and replayed."""
    split_ops: tuple[str, ...] = _flag((), decls=("--split-op",), metavar="NS::OP", repeat=True,
                                       parse=lambda text: tuple(s.strip() for s in text.split(",") if s.strip()),
                                       help="Op that starts its own eager piece (ns::op, ns.op, ns.op.default). Repeatable.")
    """Extra split ops (any spelling); the target's SPLIT_OPS and sglang's registry join them."""
    break_ops: tuple[str, ...] = _flag((), decls=("--break-op",), metavar="NS::OP", repeat=True,
                                       parse=lambda text: tuple(s.strip() for s in text.split(",") if s.strip()),
                                       help="Op that ends a breakable segment and runs eagerly (in the engine: called "
                                            "from an @eager_on_graph function). Repeatable.")
    """breakable's break points besides sglang's ``@eager_on_graph`` functions, which are found by themselves: ops the
    engine calls from such a function (the target's BREAK_OPS and a model's attention join them)."""
    sglang_split_ops: bool = _flag(True, decls=("--no-sglang-split-ops",), negate=True, parse=parse_bool,
                                   help="Do not add sglang's registered split ops even if sglang imports.")
    """Add sglang's registered split ops when sglang is importable."""
    backends: tuple[str, ...] = _flag((), decls=("--backend",), metavar="NAME", repeat=True,
                                      parse=parse_backends,
                                      help="Capture backend(s) to judge: tc_piecewise (torch.compile + split pieces), "
                                           "breakable (sglang's BCG: Python forward, segments cut at @eager_on_graph calls and break ops), "
                                           "full (one graph per size) or all. Repeatable. Default: sglang's default "
                                           "for --phase (prefill: breakable, decode: full) and tc_piecewise.")
    """sglang's capture backends to judge, each with its own verdict (``BACKENDS``); () -> ``default_backends``."""
    phase: str = _flag("prefill", decls=("--phase",), metavar="prefill|decode",
                       help="The engine phase: picks sglang's default backend (prefill: breakable, decode: full), "
                            "whose verdict is summary.capturable.")
    """prefill | decode: which of sglang's defaults ``summary.capturable`` is the verdict of."""
    device: str = _flag("cpu", decls=("--device",), metavar="cpu|cuda", help="cpu, cuda or cuda:N.")
    """cpu | cuda | cuda:N."""
    dtype: Optional[str] = _flag(None, decls=("--dtype",), metavar="DTYPE",
                                 help="float32, bfloat16 or float16 (default: as the factory builds).")
    """A FLOAT_DTYPES name, or None for what the factory builds."""
    dynamic: str = _flag("maybe", decls=("--dynamic",), metavar="MODE",
                         help="How token dims are marked: maybe (sglang's maybe_mark_dynamic), unbacked, static.")
    """How token dims are marked: maybe (sglang) | unbacked | static."""
    replay: bool = _flag(True, decls=("--no-replay",), negate=True, parse=parse_bool,
                         help="Skip replaying the pieces against eager.")
    """Replay the pieces against eager (CUDA graphs on a GPU)."""
    isolate: bool = _flag(False, decls=("--isolate",), parse=parse_bool,
                          help="GPU replay: capture each piece alone in its own memory pool.")
    """GPU replay: each piece in its own memory pool."""
    model: ModelOptions = field(default_factory=ModelOptions)
    """Model targets: which layers, attention path, config overrides."""
    nproc: int = _flag(1, decls=("--nproc",), metavar="N", parse=_parse_number(int),
                       help="Trace N tensor-parallel ranks over torch.distributed (gloo on CPU, NCCL on GPUs).")
    """Tensor-parallel ranks."""
    timeout: float = _flag(DEFAULT_TIMEOUT_S, decls=("--timeout",), metavar="SECONDS", parse=_parse_number(float),
                           help="Give up after this long (whole run, children and ranks; 0 = no limit). Exit 4.")
    """Seconds for the whole run, children and ranks included; 0: no limit."""
    observe_ops: bool = True
    """Run the target eagerly under a dispatch mode to check its ops (internal: bisection children skip it)."""
    plan_sample: int = 0
    """Internal (``plan``): 0, not a plan sample; n >= 1, a sample of a plan whose capture session runs n times (each
    size's median kept: a shallow sample's milliseconds are small and noisy). Dynamo's first-compile setup is paid
    before the compile is timed (``timings_s['compiler_setup_s']``); on a GPU the smallest and largest size are
    replayed and checked, then every size is captured as the engine does and measured (``replay.engine``;
    ``Report.capture_pass``)."""
    command: str = ""
    """The command line as typed, for the report (internal)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", normalise_backends(tuple(self.backends)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TraceOptions":
        """The inverse of ``to_dict`` (unknown keys are an error: a process boundary never drops one)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"unknown trace option(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        values["model"] = ModelOptions(**{**values.get("model", {}), "overrides": tuple(values.get("model", {}).get("overrides", ()))})
        for key in ("sizes", "split_ops", "break_ops", "backends"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def from_api(cls, target: str, options: Mapping[str, Any], command: str = "") -> "TraceOptions":
        """From ``inspect()``'s keyword arguments (the field names; ``None`` means the default).

        Raises:
            UsageError: an unknown keyword (with the closest field names).
        """
        public = {name for name, _ in declared()} | {"model"}
        unknown = sorted(set(options) - public)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(public), n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise UsageError(f"unknown option {unknown[0]!r}{hint}; options: {', '.join(sorted(public))}")
        values = {k: v for k, v in options.items() if v is not None}
        if isinstance(values.get("sizes"), str):  # '8,64' or the engine's schedule, 'prefill'
            values["sizes"] = parse_sizes(values["sizes"])
        for key in ("sizes", "split_ops", "break_ops", "overrides"):
            if key in values:
                values[key] = tuple(values[key])
        if isinstance(values.get("backends"), str):
            values["backends"] = (values["backends"],)
        if "timeout" in values:
            values["timeout"] = float(values["timeout"])
        model = values.pop("model", None) or ModelOptions()
        flat = {k: values.pop(k) for k in list(values) if k in _MODEL_FIELDS}
        return cls(target=target, command=command, model=dataclasses.replace(model, **flat), **values)

    @classmethod
    def from_flags(cls, target: str, given: Mapping[str, Any], command: str = "") -> "TraceOptions":
        """From the CLI's values for ``cli_parameters()`` (keyed by field name, as typer passes them)."""
        top: dict[str, Any] = {}
        model: dict[str, Any] = {}
        for name, meta in declared():
            if name not in given:
                continue
            value = _from_cli_value(meta, given[name])
            (model if name in _MODEL_FIELDS else top)[name] = value
        return cls(target=target, model=ModelOptions(**model), command=command, **top)

    def validate(self) -> "TraceOptions":
        """Check every value a user can get wrong; returns self.

        Raises:
            OptionError: one line naming the field and the bad value.
        """
        if self.dynamic not in DYNAMIC_MODES:
            raise OptionError("dynamic", f"must be maybe, unbacked or static, got {self.dynamic!r}")
        if self.device != "cpu" and self.device != "cuda" and not _is_cuda_index(self.device):
            raise OptionError("device", f"must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.dtype is not None and self.dtype not in FLOAT_DTYPES:
            raise OptionError("dtype", f"must be a floating type: float32, bfloat16 or float16 (got {self.dtype!r})")
        if self.nproc < 1:
            raise OptionError("nproc", f"must be 1 or more, got {self.nproc}")
        if self.timeout < 0:
            raise OptionError("timeout", f"must be 0 (no limit) or a number of seconds, got {self.timeout:g}")
        if not self.sizes or any(not isinstance(s, int) or s <= 0 for s in self.sizes):
            raise OptionError("sizes", "needs at least one positive size")
        if self.phase not in PHASES:
            raise OptionError("phase", f"must be prefill or decode, got {self.phase!r}")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise OptionError("backends", f"must be tc_piecewise, breakable, full or all, got {unknown[0]!r}")
        self.model.validate()
        return self

    @property
    def judged_backends(self) -> tuple[str, ...]:
        """The backends this run judges: those asked for, or the engine's default for the phase and tc_piecewise."""
        return self.backends or default_backends(self.phase)

    @property
    def default_backend(self) -> str:
        """sglang's default backend for the phase (``ENGINE_DEFAULT_BACKEND``)."""
        return ENGINE_DEFAULT_BACKEND.get(self.phase, "breakable")

    @property
    def torch_dtype_name(self) -> Optional[str]:
        """The torch dtype name of ``dtype`` (float32 / bfloat16 / float16), None when unset."""
        return FLOAT_DTYPES[self.dtype] if self.dtype else None


_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelOptions))


def declared() -> Iterator[tuple[str, Flag]]:
    """Every user-facing option, in ``--help`` order: (field name, its Flag). ModelOptions' fields come where
    ``model`` stands. Field names are unique across the two records (the API and the CLI use them)."""
    for f in dataclasses.fields(TraceOptions):
        if f.name == "model":
            for m in dataclasses.fields(ModelOptions):
                yield m.name, m.metadata["flag"]
        elif "flag" in f.metadata:
            yield f.name, f.metadata["flag"]


def defaults() -> dict[str, Any]:
    """Each declared option's default, by field name."""
    model = ModelOptions()
    base = TraceOptions(target="")
    return {name: getattr(model if name in _MODEL_FIELDS else base, name) for name, _ in declared()}


def flag_of(field_name: str) -> str:
    """The command-line flag of a field ('sizes' -> '--tokens'); the name itself when it has none."""
    flags = [*((name, meta) for name, meta in declared()), *((name, meta) for name, meta, _ in plan_declared())]
    return next((meta.flag for name, meta in flags if name == field_name), field_name)


def ini_value(field_name: str, text: str) -> Any:
    """A pytest ini value for a field, parsed as its flag's text is."""
    meta = dict(declared())[field_name]
    return meta.parse(text) if meta.parse is not None else text


def _from_cli_value(meta: Flag, value: Any) -> Any:
    if meta.negate:
        return not value
    if meta.repeat:
        return tuple(value or ())
    if meta.parse is not None and isinstance(value, str):
        return meta.parse(value)
    return value


def parse_samples(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); 'all' -> (0,): the whole model."""
    if text.strip() == "all":
        return (0,)
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise OptionError("samples", f"expects layer counts (1 or more) separated by commas, or all, got {text!r}")
    return counts


def parse_sample_sizes(text: str) -> int:
    """'4' -> 4; 'all' -> 0: every size of the schedule."""
    if text.strip() == "all":
        return 0
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 1:
        raise OptionError("sample_sizes", f"expects a number of sizes (1 or more) or all, got {text!r}")
    return n


@dataclass(frozen=True)
class PlanOptions:
    """One ``plan`` request, beside its ``TraceOptions``: declared once like them, from which the ``plan`` command's
    options and ``inspect(plan=True, ...)``'s keywords derive."""

    samples: tuple[int, ...] = _flag((1, 2), decls=("--samples",), metavar="K,K|all", parse=parse_samples, ini=False,
                                     show=lambda v: "all" if tuple(v) == (0,) else ",".join(map(str, v)),
                                     help="Layer counts traced to forecast the whole model (model targets); all: the "
                                          "whole model, measured.")
    """Layer counts of the samples; (0,): the whole model."""
    sample_sizes: int = _flag(4, decls=("--sample-sizes",), metavar="N|all", parse=parse_sample_sizes, ini=False,
                              show=lambda v: str(v) if v else "all",
                              help="Sizes of the schedule each sample traces: the smallest, the largest and others "
                                   "spread between; all: every size, measured.")
    """Sizes of the schedule each sample traces; 0: all."""
    max_bs: int = _flag(0, decls=("--max-bs",), metavar="N", parse=_parse_number(int), ini=False,
                        help="The schedule's largest size (default: sglang's, 2048 for prefill, 256 for decode).")
    """The schedule's largest size; 0: the phase's default."""
    mem_fraction_static: float = _flag(0.0, decls=("--mem-fraction-static",), metavar="F", parse=_parse_number(float),
                                       ini=False, help="sglang's share of the GPU for weights and KV cache; the graph "
                                                       "pool must fit in the rest (default: sglang's for the GPU).")
    """0: sglang's default for the GPU (``schedule.default_mem_fraction_static``)."""

    def validate(self) -> "PlanOptions":
        """Raises OptionError (the field named)."""
        if not self.samples or min(self.samples) < 0 or (0 in self.samples and len(self.samples) > 1):
            raise OptionError("samples", f"expects layer counts of 1 or more, or all, got {self.samples}")
        if self.sample_sizes < 0:
            raise OptionError("sample_sizes", f"expects 1 or more, or all, got {self.sample_sizes}")
        if self.max_bs < 0:
            raise OptionError("max_bs", f"must be 0 or more, got {self.max_bs}")
        if not 0.0 <= self.mem_fraction_static < 1.0:
            raise OptionError("mem_fraction_static", f"must be between 0 and 1, got {self.mem_fraction_static}")
        return self

    @classmethod
    def from_values(cls, given: Mapping[str, Any]) -> "PlanOptions":
        """From the CLI's values or ``inspect``'s keywords (field names; text parsed as the flag's; None: the
        default), validated."""
        values = {}
        for f in dataclasses.fields(cls):
            value = given.get(f.name)
            if value is None:
                continue
            values[f.name] = _from_cli_value(f.metadata["flag"], value)
        if isinstance(values.get("samples"), list):
            values["samples"] = tuple(values["samples"])
        return cls(**values).validate()


def plan_declared() -> Iterator[tuple[str, Flag, Any]]:
    """``plan``'s own options: (field name, its Flag, its default)."""
    for f in dataclasses.fields(PlanOptions):
        yield f.name, f.metadata["flag"], f.default


@dataclass(frozen=True)
class Bisect:
    """Continue narrowing a capture failure in a fresh process (the last attempt left a sticky CUDA error)."""

    capture_size: int
    graph: int
    piece: int
    phase: str
    """capture | replay."""
    lo: int
    """A prefix of this many call nodes passes."""
    hi: int
    """A prefix of this many fails."""


@dataclass(frozen=True)
class RunContext:
    """Where a pipeline runs: its rank among tensor-parallel ranks, and a bisection to continue (set by
    ``run``, never by a user)."""

    rank: int = 0
    world_size: int = 1
    bisect: Optional[Bisect] = None


def _is_cuda_index(device: str) -> bool:
    head, _, index = device.partition(":")
    return head == "cuda" and index.isascii() and index.isdigit()


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value

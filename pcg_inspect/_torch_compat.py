"""Every touch of private torch internals (``torch._dynamo``, ``torch._logging``, ``torch._C``,
``torch._subclasses``, ``torch.utils._python_dispatch``, ``torch.utils._pytree``, ``OpOverload._schema``) lives here.

A new torch release should be this one file's work. Each helper detects the feature it needs
with ``hasattr`` and says which torch version it follows; callers never import torch privates.
Checked on torch 2.11 (GPU image) and 2.13 (CPU CI).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch


COMPILER_MODULES = ("torch._dynamo", "torch._functorch.aot_autograd", "torch._inductor.config")
"""What the first ``torch.compile`` imports (about 2,000 modules, 1-2 s): imported up front, in one
block --timeout does not interrupt, instead of lazily in the middle of tracing."""


def import_compiler() -> None:
    import importlib

    for name in COMPILER_MODULES:
        importlib.import_module(name)


def warm_compiler(device: str) -> None:
    """Pay Dynamo's once-per-process setup (its lazy imports, the symbolic-shape machinery, a first FX graph) on a
    throwaway function with a dynamic dim, so a compile timed next is the target's own; then forget it."""
    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(x @ x.transpose(0, 1)).sum(0) + 1

    x = torch.ones(8, 4, device=device)
    torch._dynamo.maybe_mark_dynamic(x, 0)
    with torch.no_grad():
        torch.compile(f, fullgraph=True, backend=lambda gm, _inputs: gm.forward)(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    reset()


@dataclass
class RawBreak:
    """A graph break or compile error as Dynamo saw it, before analysis."""

    gb_type: str
    message: str
    frames: list[tuple[str, int, str]]
    """(file, line, function), outermost first, as Dynamo's real_stack / user stack gives them."""
    compile_id: str
    exc_type: str
    hard: bool = False
    """True for an error that aborted the frame (Dynamo raised), False for a graph break."""


@dataclass
class RawGuardFail:
    code: Any
    reason: str


@dataclass
class DynamoEvents:
    """What Dynamo reported while the hooks were installed."""

    breaks: list[RawBreak] = field(default_factory=list)
    guard_fails: list[RawGuardFail] = field(default_factory=list)


def reset() -> None:
    """Forget every compiled frame and counter (``torch._dynamo.reset``, public since 2.0)."""
    torch._dynamo.reset()


def current_compile_id() -> str:
    """Dynamo's current compile id as 'frame/attempt' ('' outside a compile)."""
    ctx = getattr(torch._guards, "CompileContext", None)
    cid = ctx.current_compile_id() if ctx is not None and hasattr(ctx, "current_compile_id") else None
    if cid is None:
        return ""
    frame_id = getattr(cid, "frame_id", None)
    fcid = getattr(cid, "frame_compile_id", None)
    return f"{frame_id}/{fcid}" if frame_id is not None else str(cid)


def current_frame_code() -> Any:
    """Code object of the frame Dynamo is tracing, inside a backend call (None elsewhere).

    ``InstructionTranslator.current_tx()`` (torch >= 2.1) is only set while tracing.
    """
    try:
        from torch._dynamo.symbolic_convert import InstructionTranslator

        tx = InstructionTranslator.current_tx()
    except Exception:
        return None
    return getattr(tx, "f_code", None)


def mark_token_dim(t: torch.Tensor, dim: int, mode: str) -> None:
    """Mark a tensor's token dim dynamic the way the engine does.

    mode 'maybe' is sglang's ``torch._dynamo.maybe_mark_dynamic`` (0/1 still specialise);
    'unbacked' uses ``torch._dynamo.decorators.mark_unbacked`` (2.3+); 'static' marks nothing.
    """
    if mode == "maybe":
        torch._dynamo.maybe_mark_dynamic(t, dim)
    elif mode == "unbacked":
        mark = getattr(torch._dynamo, "mark_unbacked", None) or torch._dynamo.decorators.mark_unbacked
        mark(t, dim)


def optimize(
    backend: Callable[..., Any],
    guard_filter_fn: Callable[[Any], Any],
    guard_fail_fn: Callable[[Any], None],
) -> Callable[[Any], Any]:
    """``torch._dynamo.optimize`` with graph breaks allowed and our guard hooks.

    ``torch.compile`` takes ``guard_filter_fn`` only through ``options`` and has no
    ``guard_fail_fn``; ``torch._dynamo.optimize`` takes both (torch >= 2.8).
    """
    return torch._dynamo.optimize(
        backend, nopython=False, guard_filter_fn=guard_filter_fn, guard_fail_fn=guard_fail_fn
    )


@contextlib.contextmanager
def tracing_config(recompile_limit: int = 64) -> Iterator[None]:
    """Dynamo config for a collecting trace with the engine's semantics, restored on exit.

    sglang and vLLM compile with ``fullgraph=True``, which (torch 2.11 - 2.14,
    ``torch/_dynamo/output_graph.py``: ``allow_scalar_outputs=one_graph or
    config.capture_scalar_outputs``) lets ``.item()``, ``.tolist()``, ``nonzero``, mask indexing and
    ``repeat_interleave`` stay in the graph as unbacked sizes instead of breaking. We trace with
    ``fullgraph=False`` to see every break in one run, so the two configs that give the same
    ShapeEnv are set here. ``suppress_errors`` turns a frame Dynamo cannot compile at all into an
    eager fallback that we record, so the other frames are still traced.
    """
    patches: dict[str, Any] = {"suppress_errors": True, "capture_scalar_outputs": True,
                               "capture_dynamic_output_shape_ops": True}
    if hasattr(torch._dynamo.config, "recompile_limit"):  # renamed from cache_size_limit in 2.6
        patches["recompile_limit"] = recompile_limit
    else:  # pragma: no cover - torch < 2.6
        patches["cache_size_limit"] = recompile_limit
    with torch._dynamo.config.patch(**patches):
        yield


_QUIET_LOGGERS = ("torch._dynamo", "torch._inductor", "torch.fx", "torch._subclasses", "torch.utils._sympy", "torch._guards")


@contextlib.contextmanager
def quiet_torch_logs() -> Iterator[None]:
    """Silence torch's own warnings on the console while we trace (we report them ourselves)."""
    import warnings

    saved = []
    for name in _QUIET_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


@contextlib.contextmanager
def dynamo_events() -> Iterator[DynamoEvents]:
    """Collect every graph break and compile error Dynamo logs while inside the block.

    Two sources, because neither alone sees everything (torch 2.13):
    - ``InstructionTranslatorBase.log_graph_break`` (torch >= 2.6) receives the Unsupported
      exception itself, including data-dependent jumps whose exception is no longer active
      when the structured-trace artifact is emitted; we wrap it for the duration.
    - the structured trace logger ``torch.__trace`` emits ``dynamo_graph_break_reason`` and
      ``dynamo_error`` artifacts from convert_frame for frames Dynamo skips or fails, while the
      exception is still active, so ``sys.exc_info()`` gives it to us.
    ``torch._dynamo.explain`` and ``counters['graph_break']`` miss some of these.
    """
    events = DynamoEvents()
    state = {"inside_log_graph_break": 0}
    restore: list[Callable[[], None]] = []

    translator = _instruction_translator_base()
    if translator is not None and hasattr(translator, "log_graph_break"):
        original = translator.log_graph_break

        def log_graph_break(self: Any, code_options: Any, reason: str = "", exc: Any = None, *a: Any, **kw: Any) -> Any:
            if exc is not None and not getattr(exc, "logged", False):
                events.breaks.append(_raw_break(exc, hard=False))
            state["inside_log_graph_break"] += 1
            try:
                return original(self, code_options, reason, exc, *a, **kw)
            finally:
                state["inside_log_graph_break"] -= 1

        translator.log_graph_break = log_graph_break
        restore.append(lambda: setattr(translator, "log_graph_break", original))

    trace_log = _trace_logger()
    handler = _ArtifactHandler(events, state, patched=bool(restore))
    old_level, old_propagate = trace_log.level, trace_log.propagate
    trace_log.addHandler(handler)
    trace_log.setLevel(logging.DEBUG)
    trace_log.propagate = False  # ours alone: at DEBUG, the root logger (pytest's log capture) would get every artifact
    try:
        yield events
    finally:
        trace_log.removeHandler(handler)
        trace_log.setLevel(old_level)
        trace_log.propagate = old_propagate
        for undo in restore:
            undo()


class _ArtifactHandler(logging.Handler):
    def __init__(self, events: DynamoEvents, state: dict[str, int], patched: bool) -> None:
        super().__init__(logging.DEBUG)
        self.events = events
        self.state = state
        self.patched = patched

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "metadata", None)
        if not isinstance(meta, dict) or "artifact" not in meta:
            return
        name = meta["artifact"].get("name") if isinstance(meta["artifact"], dict) else None
        if name not in ("dynamo_graph_break_reason", "dynamo_error"):
            return
        if name == "dynamo_graph_break_reason" and self.patched and self.state["inside_log_graph_break"]:
            return  # already taken from log_graph_break itself
        exc = sys.exc_info()[1]
        hard = name == "dynamo_error"
        if exc is not None:
            self.events.breaks.append(_raw_break(exc, hard=hard))
        else:
            parsed = _parse_break_payload(str(getattr(record, "payload", "") or ""), hard)
            if parsed is not None:
                self.events.breaks.append(parsed)


def _raw_break(exc: BaseException, hard: bool) -> RawBreak:
    stack = getattr(exc, "real_stack", None) or []
    frames = [(fs.filename, int(fs.lineno or 0), fs.name) for fs in stack]
    msg = str(getattr(exc, "msg", None) or exc)
    if not frames:  # e.g. ConstraintViolationError: the user stack is only in the message
        frames = [(m["file"], int(m["line"]), m["func"]) for m in _FRAME_RE.finditer(msg.split("User stack:", 1)[-1])]
    if not frames and exc.__traceback__ is not None:
        frames = [(f.filename, int(f.lineno or 0), f.name) for f in traceback.extract_tb(exc.__traceback__)]
    gb_type = getattr(exc, "gb_type", None) or ""
    if not gb_type:
        gb_type = type(exc).__name__
    return RawBreak(gb_type, msg, frames, current_compile_id(), type(exc).__name__, hard)


_FRAME_RE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


def _parse_break_payload(payload: str, hard: bool) -> Optional[RawBreak]:
    # Fallback for torch versions without log_graph_break: the artifact's text.
    m = re.search(r"Graph Break Reason: (.*?)\n\n", payload, re.S)
    if not m and not hard:
        return None
    reason = m.group(1).strip() if m else payload.strip().splitlines()[-1]
    user_part = payload.split("User code traceback:", 1)[-1].split("Traceback (most recent call last)", 1)[0]
    frames = [(f["file"], int(f["line"]), f["func"]) for f in _FRAME_RE.finditer(user_part)]
    return RawBreak(reason.splitlines()[0], reason, frames, current_compile_id(), "Unsupported", hard)


def split_unsupported_message(msg: str) -> dict[str, str]:
    """Split Dynamo's graph-break text into gb_type / explanation / hints / context (2.7+ format)."""
    out = {"gb_type": msg.strip().splitlines()[0] if msg.strip() else "", "explanation": "", "hints": "", "context": ""}
    exp = re.search(r"Explanation:[ \t]*(.*?)(?:\n\s*Hint:|\n\n|$)", msg, re.S)
    if exp:
        out["explanation"] = " ".join(exp.group(1).split())
    out["hints"] = "\n".join(h.strip() for h in re.findall(r"Hint:\s*(.*)", msg))
    ctx = re.search(r"Developer debug context:\s*(.*?)(?:\n\n|$)", msg, re.S)
    if ctx:
        out["context"] = " ".join(ctx.group(1).split())
    return out


def graph_break_id(gb_type: str) -> tuple[str, str]:
    """(gb_id, doc_url) for a graph-break type from torch's registry, ('', '') if unknown.

    ``torch._dynamo.exc._load_gb_type_to_gb_id_map`` / ``get_gbid_documentation_link`` exist
    since torch 2.8 (graph break registry); detected with hasattr.
    """
    exc_mod = torch._dynamo.exc
    if not gb_type or not hasattr(exc_mod, "_load_gb_type_to_gb_id_map"):
        return "", ""
    try:
        gb_id = exc_mod._load_gb_type_to_gb_id_map().get(gb_type, "")
    except Exception:
        return "", ""
    url = ""
    if gb_id and hasattr(exc_mod, "get_gbid_documentation_link"):
        url = exc_mod.get_gbid_documentation_link(gb_type) or ""
    return gb_id, url


@dataclass
class RawGuard:
    """One guard as the filter saw it."""

    type: str
    source: str
    code: str
    has_value: bool = False
    value: Any = None
    """The guarded value, for Python scalars only (never a tensor or a module: no reference kept)."""
    is_global: bool = False


def guard_entry(entry: Any) -> RawGuard:
    """Our record of one ``GuardFilterEntry`` (name, guard_type, value, is_global, orig_guard: torch >= 2.8)."""
    gtype = str(getattr(entry, "guard_type", "") or "")
    name = str(getattr(entry, "name", "") or "")
    orig = getattr(entry, "orig_guard", None)
    code_list = getattr(orig, "code_list", None) if orig is not None else None
    code = " and ".join(code_list) if code_list else ""
    value = getattr(entry, "value", None)
    scalar = isinstance(value, (bool, int, float, str, type(None))) and bool(getattr(entry, "has_value", False))
    return RawGuard(gtype, name, code, scalar, value if scalar else None, bool(getattr(entry, "is_global", False)))


def guard_fail(fail: Any) -> RawGuardFail:
    """Our record of a ``GuardFail`` (reason text, the failing code object)."""
    return RawGuardFail(getattr(fail, "orig_code", None), str(getattr(fail, "reason", fail)))


def registered_ops(namespace: str) -> list[str]:
    """'ns::op' names of every op registered under a namespace (``torch._C._dispatch_get_all_op_names``)."""
    get_all = getattr(torch._C, "_dispatch_get_all_op_names", None)
    if get_all is None:
        return []
    prefix = namespace + "::"
    return sorted({n.split(".")[0] for n in get_all() if n.startswith(prefix)})


def resolve_op(name: str) -> Optional[Any]:
    """The ``torch.ops`` packet for 'ns.op' / 'ns::op', or None when not registered."""
    ns, _, op = name.replace("::", ".").partition(".")
    op = op.split(".")[0]
    if not ns or not op:
        return None
    try:
        return getattr(getattr(torch.ops, ns), op)
    except (AttributeError, RuntimeError):
        return None


def has_fake_kernel(overload: Any) -> bool:
    """Whether an OpOverload can run under FakeTensorMode: a registered fake impl, a Meta kernel,
    or a composite kernel (but not the composite kernel ``torch.library.custom_op`` installs for
    its real impl, which Dynamo refuses without ``register_fake``).

    Reads ``torch._library.simple_registry`` (fake impls, torch >= 2.4) and
    ``torch._library.custom_ops.OPDEFS`` (custom_op definitions, torch >= 2.4).
    """
    try:
        name = overload.name()
    except Exception:
        return False
    qualname = name.split(".")[0]
    library = getattr(torch, "_library", None)
    custom_ops = getattr(library, "custom_ops", None)
    opdef = getattr(custom_ops, "OPDEFS", {}).get(qualname) if custom_ops is not None else None
    if opdef is not None:  # torch.library.custom_op: its registry entries raise without register_fake...
        if getattr(opdef, "_abstract_fn", None) is not None:
            return True
        # ...unless torch.library derives one: an op that only writes its mutable args and returns
        # nothing (torch._library.utils.can_generate_trivial_fake_impl, torch >= 2.4).
        trivial = getattr(getattr(library, "utils", None), "can_generate_trivial_fake_impl", None)
        try:
            return bool(trivial(overload)) if trivial is not None else False
        except Exception:
            return False
    simple = getattr(library, "simple_registry", None)
    if simple is not None:
        try:
            if simple.singleton.find(qualname).fake_impl.kernel is not None:
                return True
        except Exception:
            pass
    has = getattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", None)
    if has is None:
        return False
    return bool(has(name, "Meta") or has(name, "CompositeImplicitAutograd") or has(name, "CompositeExplicitAutograd"))


def placeholder_source(node: Any) -> str:
    """Dynamo's source name of a graph placeholder ("L['x']", "L['self']._modules['lin']._parameters['weight']").

    Read from ``node.meta['grapharg'].source``; ``Source.name`` is a method before 2.10 and may
    become a property, so both are handled.
    """
    grapharg = node.meta.get("grapharg")
    if grapharg is None:
        ev = node.meta.get("example_value")
        grapharg = getattr(ev, "_dynamo_grapharg", None) if ev is not None else None
    source = getattr(grapharg, "source", None)
    if source is None:
        return ""
    name = getattr(source, "name", "")
    try:
        return str(name() if callable(name) else name)
    except Exception:
        return ""


def is_param_placeholder(node: Any) -> bool:
    """True for a placeholder that carries a module parameter or buffer (a weight)."""
    src = placeholder_source(node)
    if src:
        return "_parameters[" in src or "_buffers[" in src
    # No grapharg on the node: Dynamo names lifted module state l_self_..._parameters_weight_.
    return "_parameters_" in node.name or "_buffers_" in node.name


def _instruction_translator_base() -> Any:
    mod = getattr(torch._dynamo, "symbolic_convert", None)
    if mod is None:
        import importlib

        mod = importlib.import_module("torch._dynamo.symbolic_convert")
    return getattr(mod, "InstructionTranslatorBase", None)


def _trace_logger() -> logging.Logger:
    internal = getattr(torch._logging, "_internal", None)
    lg = getattr(internal, "trace_log", None) if internal is not None else None
    return lg if isinstance(lg, logging.Logger) else logging.getLogger("torch.__trace")


# ---------------------------------------------------------------- op schemas


def is_op(target: Any) -> bool:
    """True for an OpOverload / OpOverloadPacket (a dispatcher op, not a Python function)."""
    return isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket))


def op_schema(overload: Any) -> Any:
    """The FunctionSchema of an OpOverload (``OpOverload._schema``, stable since torch 1.x)."""
    return overload._schema


def argument_names(overload: Any) -> list[str]:
    """Names of an op's arguments, in schema order."""
    return [a.name for a in overload._schema.arguments]


def specialisations() -> list[tuple[str, Any, list[tuple[str, int, str]]]]:
    """Dynamic dims the current compile specialised to a constant: (source, value, stack as (file, line, function)).

    From the ShapeEnv of the compile in progress (call it from a backend): ``specialization_stacks``
    (source -> the Python stack where the guard pinned it) and ``replacements`` (symbol -> constant),
    torch >= 2.6; an empty list where either is missing.
    """
    try:
        from torch._guards import TracingContext

        ctx = TracingContext.try_get()
        env = ctx.fake_mode.shape_env if ctx is not None and ctx.fake_mode is not None else None
        stacks = getattr(env, "specialization_stacks", None)
        if not stacks:
            return []
        values = {}
        for sym, sources in getattr(env, "var_to_sources", {}).items():
            value = env.replacements.get(sym)
            if value is not None and getattr(value, "is_number", False):
                for src in sources:
                    values[_source_name(src)] = int(value)
        out = []
        for src, frames in stacks.items():
            name = _source_name(src)
            out.append((name, values.get(name), [(f.filename, int(f.lineno or 0), f.name) for f in frames]))
        return out
    except Exception:
        return []


def _source_name(src: Any) -> str:
    name = getattr(src, "name", "")
    return name() if callable(name) else str(name)


def is_tensor_value(value: Any) -> bool:
    """A traced node's value is a tensor (a fake one), not a SymBool/SymInt or a Python value."""
    return isinstance(value, torch.Tensor)


def argument_defaults(overload: Any) -> dict[str, Any]:
    """Schema defaults of an op's arguments (name -> value)."""
    return {a.name: a.default_value for a in overload._schema.arguments if a.has_default_value()}


def fake_function(overload: Any) -> Any:
    """The Python function registered as an op's fake impl (None when there is none, or it is not Python):
    ``custom_op``'s ``register_fake`` (``OPDEFS``), else the fake registry's kernel, unwrapped."""
    import inspect

    qual = f"{overload.namespace}::{overload._schema.name.split('::')[-1]}"
    try:
        from torch._library.custom_ops import OPDEFS

        opdef = OPDEFS.get(qual)
        if opdef is not None and getattr(opdef, "_abstract_fn", None) is not None:
            return opdef._abstract_fn
        from torch._library import simple_registry

        kernel = simple_registry.singleton.find(qual).fake_impl.kernel
        return inspect.unwrap(kernel.func) if kernel is not None else None
    except Exception:
        return None


def mutable_args(overload: Any) -> tuple[str, ...]:
    """Arguments the schema marks written (``Tensor(a!)``)."""
    return tuple(a.name for a in overload._schema.arguments if a.alias_info is not None and a.alias_info.is_write)


def tensor_args(overload: Any) -> tuple[str, ...]:
    """Arguments typed Tensor (or Tensor?) in the schema."""
    return tuple(a.name for a in overload._schema.arguments if str(a.type).startswith("Tensor"))


def returns_nothing(overload: Any) -> bool:
    """The op returns ``()``: torch.library derives its fake impl (it only writes its mutable args)."""
    return len(overload._schema.returns) == 0


def schema_text(overload: Any) -> str:
    """The schema as text, e.g. 'ns::op(Tensor x, int k) -> Tensor'."""
    return str(overload._schema)


def default_overload(packet: Any) -> Any:
    """``packet.default`` (None when the op has no default overload)."""
    return getattr(packet, "default", None)


def mutates_unknown(overload: Any) -> bool:
    """A ``torch.library.custom_op`` declared with ``mutates_args="unknown"`` (every argument may be written).

    The schema cannot tell it from listing every tensor argument (``infer_schema`` marks each
    ``Tensor(aN!)`` either way), so the decorator in the op's source is read: the opdef in
    ``torch._library.custom_ops.OPDEFS`` (torch >= 2.4) keeps the decorated function as ``_init_fn``.
    """
    import inspect

    try:
        qualname = overload.name().split(".")[0]
    except Exception:
        return False
    custom_ops = getattr(getattr(torch, "_library", None), "custom_ops", None)
    opdef = getattr(custom_ops, "OPDEFS", {}).get(qualname) if custom_ops is not None else None
    fn = getattr(opdef, "_init_fn", None)
    if fn is None or not all(a.alias_info is not None and a.alias_info.is_write
                             for a in overload._schema.arguments if str(a.type).startswith("Tensor")):
        return False
    try:
        source = "".join(inspect.getsourcelines(fn)[0])
    except (OSError, TypeError):
        return False
    return bool(re.search(r"mutates_args\s*=\s*[\"']unknown[\"']", source))


def version_counter(t: torch.Tensor) -> int:
    """A tensor's version counter (bumped by every in-place write to it or a view of it; ``Tensor._version``)."""
    return int(t._version)


# ---------------------------------------------------------------- eager observation


def dispatch_mode_base() -> type:
    """``torch.utils._python_dispatch.TorchDispatchMode`` (the base of our eager observer)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    return TorchDispatchMode


def call_kernel_observed(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    """Call a custom op's backend kernel with ``mode`` active inside it, so the aten ops its Python or
    C++ kernel dispatches (``.item()``, ``nonzero``) are seen too.

    A dispatch mode is popped while it handles an op, so ``func(*args)`` would run the kernel
    unobserved. Instead the mode is pushed again, the Python dispatch key forced on, and the op
    redispatched straight to its backend key (``OpOverload.redispatch``, torch >= 2.0). Falls back
    to a plain call when the op has no kernel for that backend (CompositeImplicit ops, no tensors).
    """
    device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), None)
    key = {"cpu": torch._C.DispatchKey.CPU, "cuda": torch._C.DispatchKey.CUDA}.get(device or "")
    # "computed": a kernel registered for the backend or through an alias key (CompositeExplicitAutograd).
    has = getattr(torch._C, "_dispatch_has_computed_kernel_for_dispatch_key", None)
    if key is None or has is None or not has(func.name(), key.name):
        return func(*args, **kwargs)
    python = torch._C.DispatchKeySet(torch._C.DispatchKey.Python)
    # ADInplaceOrView back on too: in-place writes inside the kernel then bump version counters.
    inplace = torch._C.DispatchKeySet(torch._C.DispatchKey.ADInplaceOrView)
    include = torch._C._dispatch_tls_local_include_set() | python
    exclude = torch._C._dispatch_tls_local_exclude_set() - python - inplace
    with mode, torch._C._ForceDispatchKeyGuard(include, exclude):
        return func.redispatch(torch._C.DispatchKeySet(key), *args, **kwargs)


def run_fake(func: Any, args: tuple, kwargs: dict) -> Any:
    """Run an op's fake impl on fake copies of real inputs (``FakeTensorMode``, torch >= 2.0)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._pytree import tree_map

    import logging

    log = logging.getLogger("torch._subclasses.fake_tensor")  # logs a fake that raises at ERROR: the caller reports it
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with FakeTensorMode(allow_non_fake_inputs=False) as mode:
            conv = lambda x: mode.from_tensor(x) if isinstance(x, torch.Tensor) else x  # noqa: E731
            return func(*tree_map(conv, args), **tree_map(conv, kwargs))
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def quiet_fx_errors() -> Iterator[None]:
    """Keep torch.fx from printing a failing GraphModule's generated-code traceback to stderr.

    ``torch.fx.graph_module._WrappedCall.__call__`` prints it with the builtin ``print`` before
    re-raising (torch 1.x - 2.14); a module-level ``print`` shadows the builtin for the block.
    The caller records the exception itself.
    """
    import torch.fx.graph_module as fx_gm

    had = "print" in vars(fx_gm)
    saved = vars(fx_gm).get("print")
    fx_gm.print = lambda *a, **k: None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if had:
            fx_gm.print = saved  # type: ignore[attr-defined]
        else:
            del fx_gm.print  # type: ignore[attr-defined]


# ---------------------------------------------------------------- unbacked sizes


def unbacked_bindings(node: Any) -> dict[Any, Any]:
    """Unbacked symbols an FX node binds (``node.meta['unbacked_bindings']``, set by Dynamo since torch 2.4)."""
    return dict(node.meta.get("unbacked_bindings") or {})


def has_unbacked(value: Any) -> bool:
    """Whether a traced value (tensor, SymInt, tuple of them) depends on an unbacked symbol."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    try:
        return bool(free_unbacked_symbols(value))
    except Exception:
        return False


def is_symbolic_scalar(value: Any) -> bool:
    """A SymInt / SymFloat / SymBool (what ``.item()`` gives under capture_scalar_outputs)."""
    return isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool))


def dynamo_user_stack() -> list[traceback.FrameSummary]:
    """The user's stack Dynamo is symbolically tracing right now ([] when not tracing).

    ``torch._guards.TracingContext.extract_stack`` (torch >= 2.1): while Dynamo unrolls a loop the
    Python stack shows only Dynamo itself; this is the line of the user's code it is at.
    """
    ctx = getattr(torch._guards, "TracingContext", None)
    try:
        if ctx is None or ctx.try_get() is None:
            return []
        return list(ctx.extract_stack())
    except Exception:
        return []


def pool_bytes(pool: Any) -> int:
    """Bytes of the segments a CUDA-graph memory pool holds (``torch.cuda.memory_snapshot``'s
    ``segment_pool_id``, torch >= 2.1; 0 when it cannot tell)."""
    try:
        wanted = tuple(pool)
        return sum(int(seg.get("total_size", 0)) for seg in torch.cuda.memory_snapshot()
                   if tuple(seg.get("segment_pool_id", ())) == wanted)
    except Exception:
        return 0

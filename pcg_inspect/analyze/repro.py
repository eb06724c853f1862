"""Is eager a function of its inputs? Two eager calls on identical inputs, op by op.

A CUDA graph replays the kernels it captured with the arguments they had at capture: an op that reads
host state (a Python counter, a dict, a per-step flag) inside its kernel replays the capture-time
value forever, and nothing fails. The only trace such an op leaves in eager is that two calls on the
same inputs give different outputs. So the target runs twice at one size, with its tensors (buffers,
tensor attributes) and every RNG state put back before the second call, deterministic algorithms on
and uninitialised memory filled (``torch.empty`` then reads the same in both calls), each op's inputs
and outputs summed in float64. The first op whose outputs differ is named at its user line:

- its inputs were the same: the op reads host state (``host_state``), or draws from a generator it
  keeps itself (a random op: cause ``rng``);
- its inputs differed though no earlier op's output did: a tensor made from a Python value.

When the forward's output holds NaN/Inf, the same pass names the first op that turned finite inputs into
them (``non_finite``; an ``-inf`` attention mask that softmax makes finite again is no finding), and it finds
the parameters the forward rewrote in place (``.data``/``set_``: ``param_data_mutation``).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from .. import _torch_compat as compat
from ..errors import one_line
from ..fingerprint import digest
from ..frames import live_user_frame

_UNINITIALISED = ("empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided")
_ASYNC = ("c10d", "_c10d_functional", "c10d_functional", "_dtensor")
"""Namespaces of collectives: their output is written asynchronously (read it after the wait, in a later op)."""
RANDOM_OPS = frozenset({
    "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "normal", "normal_", "uniform_",
    "bernoulli", "bernoulli_", "dropout", "native_dropout", "multinomial", "exponential_", "geometric_", "cauchy_",
    "log_normal_", "random_", "poisson", "rrelu", "rrelu_with_noise",
})
"""aten ops that draw random numbers (their output differs between calls unless the generator is reset)."""


@dataclass
class OpSeen:
    """One op call in a recorded forward."""

    op: str
    """'aten.mul' or 'ns.op'."""
    site: tuple[str, int]
    inputs: tuple[tuple[float, float], ...]
    outputs: tuple[tuple[float, float], ...]
    """(sum, sum of |x|) in float64 per tensor."""
    base: str = ""
    """The op's name without namespace or overload ('randn')."""
    inside: str = ""
    """The custom op whose kernel made this call ('' in the user's own code)."""


@dataclass
class Repro:
    """What two eager calls on identical inputs showed."""

    tokens: Optional[int]
    reproducible: bool = True
    first: Optional[OpSeen] = None
    """The first op whose outputs differed between the calls."""
    cause: str = ""
    """'host_state' (same inputs, another output), 'rng' (a random op), 'host_tensor' (an input made from a Python
    value differed), 'path' (the second call ran other ops), 'output' (only the forward's output differed)."""
    other: str = ""
    """'path': the op the second call ran instead."""
    max_rel: float = 0.0
    non_finite: Optional[OpSeen] = None
    """When the forward's output holds NaN/Inf: the first op whose outputs held them though its inputs did not."""
    output_non_finite: bool = False
    params_rewritten: list[str] = field(default_factory=list)
    """Parameters whose storage or values the forward changed ('layers.0.weight')."""
    param_writes: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Parameter -> the user line of the first op that wrote its storage in place."""
    error: str = ""
    """The check could not run (the forward raised): why."""


def check(module: Any, call: Any, roots: Sequence[str]) -> Repro:
    """Run ``module`` twice on ``call``'s inputs (state and RNG put back in between) and compare op by op."""
    import torch

    out = Repro(call.tokens)
    saved = _tensor_state(module)
    params = _param_fingerprints(module)
    rng = _rng_state()
    runs = []
    try:
        with _deterministic(), torch.no_grad():
            for i in range(2):
                if i:
                    _restore(saved)
                    _set_rng(rng)
                seen: list[OpSeen] = []
                args = [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in call.args]
                kwargs = {n: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for n, v in call.kwargs.items()}
                writes: dict[str, tuple[str, int]] = {}
                with _recorder(seen, roots, _param_storages(module) if i == 0 else {}, writes):
                    result = module(*args, **kwargs)
                runs.append((seen, _digests(result)))
                if i == 0:
                    out.param_writes = writes
                    out.params_rewritten = sorted(set(_rewritten(module, params)) | set(writes))
    except Exception as exc:  # the target raises eagerly: reported elsewhere (target_error)
        out.error = one_line(exc)
        return out
    finally:
        _restore(saved)
        _set_rng(rng)
    (first, result1), (second, result2) = runs
    out.output_non_finite = not _finite(result1)
    if out.output_non_finite:  # an -inf mask that softmax turns finite again is no problem: only what reaches the output
        out.non_finite = next((s for s in first if not _finite(s.outputs) and _finite(s.inputs)), None)
    if out.params_rewritten:  # the second call saw other weights: the comparison says nothing about host state
        return out
    for a, b in zip(first, second):
        if a.op != b.op:
            out.reproducible, out.first, out.cause, out.other = False, a, "path", b.op
            return out
        rel = _difference(a.outputs, b.outputs)
        if rel > _TOLERANCE:
            same_inputs = _difference(a.inputs, b.inputs) <= _TOLERANCE
            cause = ("rng" if a.base in RANDOM_OPS else "host_state") if same_inputs else "host_tensor"
            out.reproducible, out.first, out.cause, out.max_rel = False, a, cause, rel
            return out
    if len(first) != len(second):
        extra = (first if len(first) > len(second) else second)[min(len(first), len(second))]
        out.reproducible, out.first, out.cause, out.other = False, extra, "path", ""
        return out
    rel = _difference(result1, result2)
    if rel > _TOLERANCE:
        out.reproducible, out.cause, out.max_rel = False, "output", rel
    return out


_TOLERANCE = 1e-4
"""Relative difference (of sums, against the sum of magnitudes) above which two calls differ: far above float
reassociation, far below any real difference in what an op computes."""


def _difference(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    if len(a) != len(b):
        return math.inf
    worst = 0.0
    for (sa, ma), (sb, mb) in zip(a, b):
        if not (math.isfinite(sa) and math.isfinite(sb)):
            if not (math.isnan(sa) and math.isnan(sb)) and sa != sb:
                return math.inf
            continue
        worst = max(worst, abs(sa - sb) / max(ma, mb, 1e-12))
    return worst


def _finite(digests: Sequence[tuple[float, float]]) -> bool:
    return all(math.isfinite(s) for s, _ in digests)


def _digests(value: Any) -> tuple[tuple[float, float], ...]:
    import torch

    out: list[tuple[float, float]] = []

    def walk(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            out.append(digest(v))
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(value)
    return tuple(out)


@contextlib.contextmanager
def _recorder(seen: list[OpSeen], roots: Sequence[str], params: dict[int, str], writes: dict[str, tuple[str, int]]
              ) -> Iterator[None]:
    from ..opnames import target_key

    base = compat.dispatch_mode_base()
    inside: list[str] = []

    class _Digest(base):  # type: ignore[misc, valid-type]
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            ns = getattr(func, "namespace", "")
            if ns in ("aten", "prim", "prims", ""):
                out = func(*args, **kwargs)
            else:  # a custom op's kernel runs with this mode inside it: the aten op that reads host state is named
                inside.append(target_key(func).replace(".", "::", 1))
                try:
                    out = compat.call_kernel_observed(self, func, args, kwargs)
                finally:
                    inside.pop()
            name = str(func.overloadpacket).split(".")[-1]
            if name in _UNINITIALISED or ns in _ASYNC:  # a collective returns before its result is there
                return out
            frame = live_user_frame(roots)
            site = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("", 0)
            written = _written(func, args, kwargs)
            for w in written:
                param = params.get(w.untyped_storage().data_ptr()) if hasattr(w, "untyped_storage") else None
                if param and param not in writes:
                    writes[param] = site
            seen.append(OpSeen(target_key(func), site, _digests((args, kwargs)), _digests((out, written)), name,
                               inside[-1] if inside else ""))
            return out

    with _Digest():
        yield


def _written(func: Any, args: tuple, kwargs: dict) -> list[Any]:
    """The arguments the op's schema marks written (an op that returns nothing writes its result there)."""
    schema = getattr(func, "_schema", None)
    out = []
    for i, a in enumerate(getattr(schema, "arguments", ())):
        info = a.alias_info
        if info is not None and info.is_write:
            value = args[i] if i < len(args) else kwargs.get(a.name)
            if value is not None:
                out.append(value)
    return out


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic algorithms (warnings only) and uninitialised memory filled, for the two calls."""
    import torch

    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    deterministic = getattr(torch.utils, "deterministic", None)
    fill = getattr(deterministic, "fill_uninitialized_memory", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.use_deterministic_algorithms(True, warn_only=True)
        if fill is not None:
            deterministic.fill_uninitialized_memory = True
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was, warn_only=was_warn)
            if fill is not None:
                deterministic.fill_uninitialized_memory = fill


def _tensor_state(module: Any) -> list[tuple[Any, str, Any, Any]]:
    """(module, attribute, tensor, a copy of its values) for every buffer and tensor attribute (not parameters)."""
    import torch

    out = []
    for _, m in module.named_modules():
        names = dict(m.named_buffers(recurse=False))
        names.update({k: v for k, v in vars(m).items() if isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter)})
        for name, t in names.items():
            if isinstance(t, torch.Tensor) and not t.is_meta:
                out.append((m, name, t, t.detach().clone()))
    return out


def _restore(saved: list[tuple[Any, str, Any, Any]]) -> None:
    import torch

    with torch.no_grad():
        for m, name, t, values in saved:
            if name in m._buffers:
                m._buffers[name] = t
            elif name in vars(m):
                setattr(m, name, t)
            if t.shape == values.shape and t.dtype == values.dtype:
                t.copy_(values)


def _param_storages(module: Any) -> dict[int, str]:
    return {p.untyped_storage().data_ptr(): name for name, p in module.named_parameters()}


def _param_fingerprints(module: Any) -> dict[str, tuple[int, tuple[float, float]]]:
    return {name: (p.untyped_storage().data_ptr(), digest(p)) for name, p in module.named_parameters()}


def _rewritten(module: Any, before: dict[str, tuple[int, tuple[float, float]]]) -> list[str]:
    now = _param_fingerprints(module)
    return [name for name, (ptr, digest) in before.items()
            if name in now and (now[name][0] != ptr or _difference((digest,), (now[name][1],)) > _TOLERANCE)]


def _rng_state() -> tuple[Any, Any]:
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng(state: tuple[Any, Any]) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


# ------------------------------------------------------------------------ findings


def repro_findings(repro: Optional[Repro], module: Any, roots: Sequence[str]) -> list[Any]:
    """host_state, non_finite and param_data_mutation findings from what the two calls showed."""
    from ..details import ParamDetails, ReproDetails
    from ..frames import source_line
    from ..report import Finding

    if repro is None or repro.error:
        return []
    out = []
    at_tokens = f" at {repro.tokens} tokens" if repro.tokens else ""

    def at(site: tuple[str, int]) -> dict[str, Any]:
        return dict(file=site[0], line=site[1], code=source_line(*site))

    if repro.params_rewritten:
        site = next((repro.param_writes[p] for p in repro.params_rewritten if p in repro.param_writes), None) \
            or _data_write_line(module, repro.params_rewritten, roots)
        names = ", ".join(repro.params_rewritten)
        out.append(Finding(
            kind="param_data_mutation", severity="error",
            message=f"forward rewrites parameter(s) {names} in place (.data / set_): under torch.compile AOT turns it into "
                    "a storage swap, the weight's address changes on every compiled call, and a captured graph keeps "
                    "reading the old storage; in eager it compounds on every call",
            hint="Do it once outside forward (at load), or keep the mask as a buffer and multiply: w = self.weight * self.mask.",
            details=ParamDetails(tuple(repro.params_rewritten)), **at(site or ("", 0)),
        ))
    if not repro.reproducible:
        out.append(_host_state(repro, at_tokens, at))
    if repro.non_finite is not None:
        s = repro.non_finite
        out.append(Finding(
            kind="non_finite", severity="error", op=s.op,
            message=f"{s.op} turned finite inputs into NaN/Inf{at_tokens} (eager): a NaN output compares as no "
                    "difference, so no replay check can pass judgment on it",
            hint="Clamp or rescale before the op, compute in float32, guard divisions and logs against 0.",
            details=ReproDetails("op", repro.tokens), **at(s.site),
        ))
    elif repro.output_non_finite:
        out.append(Finding(
            kind="non_finite", severity="error",
            message=f"the forward's output holds NaN/Inf{at_tokens} (eager), though no op turned finite inputs into "
                    "them: are the inputs or weights non-finite?",
            hint="Check the inputs and weights the factory builds for NaN/Inf.",
            details=ReproDetails("output", repro.tokens),
        ))
    return out


def _host_state(repro: Repro, at_tokens: str, at: Any) -> Any:
    from ..details import ReproDetails
    from ..report import Finding

    s = repro.first
    op = s.op if s is not None else ""
    op_text = f"{op} (in the kernel of {s.inside})" if s is not None and s.inside else op
    frozen = "a CUDA graph replays the capture-time value forever and nothing fails"
    message = {
        "host_state": f"{op_text} returned another result on a second eager call with identical inputs{at_tokens} (relative "
                      f"difference {repro.max_rel:.1e}): it reads host state (a Python counter, dict or flag); {frozen}",
        "rng": f"{op_text} drew other random numbers on a second call with the same inputs and RNG state{at_tokens}: it uses "
               "a generator of its own, which a CUDA graph captures once (register it with the graph, or use the "
               "default one)",
        "host_tensor": f"{op_text} got an input built from a Python value that changed between two eager calls{at_tokens}: "
                       f"{frozen}",
        "path": f"the second eager call on identical inputs ran {repro.other or 'other ops'} where the first ran {op}"
                f"{at_tokens}: a branch on host state; {frozen.replace('value', 'path')}",
        "output": f"the forward's output differs between two eager calls on identical inputs{at_tokens} though no op's "
                  f"output did: it reads host state outside any op; {frozen}",
    }[repro.cause]
    hint = ("Use the default generator (a CUDA graph advances its offset on every replay) or register yours with the "
            "graph (CUDAGraph.register_generator_state)." if repro.cause == "rng" else
            "Pass the value in as a device tensor the engine updates before each replay, or make the op a split op "
            "that runs eagerly. Until then eager is no reference: replay checks cannot be called ok.")
    return Finding(kind="host_state", severity="error", op=op if repro.cause != "path" else "", message=message, hint=hint,
                   details=ReproDetails(repro.cause, repro.tokens, round(repro.max_rel, 6), repro.other),
                   **(at(s.site) if s is not None else {}))


_DATA_WRITE = __import__("re").compile(r"\.data\s*(?:[-+*/]?=)(?!=)|\.data\.\w+_\(|\.set_\(")


def _data_write_line(module: Any, params: Sequence[str], roots: Sequence[str]) -> Optional[tuple[str, int]]:
    """The line of a `.data = ...` / `.data.mul_(...)` / `.set_(...)` in the forward of a module owning ``params``."""
    import inspect

    owners = {p.rsplit(".", 1)[0] if "." in p else "" for p in params}
    for path, m in module.named_modules():
        if path not in owners:
            continue
        try:
            lines, start = inspect.getsourcelines(type(m).forward)
            file = inspect.getsourcefile(type(m).forward) or ""
        except (OSError, TypeError):
            continue
        for i, line in enumerate(lines):
            if _DATA_WRITE.search(line.split("#", 1)[0]):
                return file, start + i
    return None

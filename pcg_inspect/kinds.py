"""Every finding kind (and graph-break category), declared once: what it means, its typed details, the fix.

A ``Kind`` holds all a kind's knowledge: the catalog text ``pcg-inspect explain`` prints and
``docs/findings.md`` is generated from, the details record its findings carry (JSON round trip,
``diff``'s matching), the decision ``fix`` states when no edit is right, the fix planner that
writes the edit (``"module:function"``, imported only by ``fix``), and the few flags views read
(an exit code it forces, a capture verdict's wording). Views, ``diff``, ``fix``, the docs and the
tests look kinds up here: no ``kind == "..."`` elsewhere. A new kind is one ``declare(Kind(...))``
— here, or in the module that produces it, with its own details record — plus its tests.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .options import BACKENDS as ALL_BACKENDS
from .details import (BreakArgDetails, BufferDetails, CaptureDetails, OutputStructureDetails, Details, DivergenceDetails, ErrorDetails, GuardDetails, HostSyncDetails, OpDetails,
                      ParamDetails, RankDetails, ReproDetails, SplitOutputDetails, TargetExitDetails, TimeoutDetails, TpMismatchDetails)


@dataclass(frozen=True)
class Kind:
    """One finding kind or graph-break category."""

    name: str
    title: str
    """One line, for ``explain`` and the docs."""
    severity: str
    """How it is judged, in words (the finding's own ``severity`` is set where it is produced)."""
    means: str
    """What it means for CUDA graph capture, with the real report it comes from."""
    example: str = ""
    """Code that produces it."""
    fix: str = ""
    """The fix, as code to paste or as prose."""
    details: type[Details] = Details
    """The typed record a finding of this kind carries in ``details``."""
    decision: str = ""
    """What the user must decide when ``fix`` has no edit for it (or its planner declines)."""
    planner: str = ""
    """``"module:function"``: ``function(item, target_file) -> fix.Edit`` writes the edit (``fix`` resolves it)."""
    advisory: bool = False
    """A *finding* of this kind needs no source edit of its own (warnings about recompiles and guards, an address
    read off the traced path): ``fix`` neither edits nor lists it. A graph break of the same category still may."""
    break_category: bool = False
    """A graph-break category rather than a finding kind (no details record)."""
    exit_code: Optional[int] = None
    """A kind that stops the run forces this exit code (timeout 4, target_exit 2); the higher one wins."""
    summary: str = ""
    """For a piece's capture verdict: what happened to it ('failed CUDA graph capture')."""
    blocks: tuple[str, ...] = ALL_BACKENDS
    """The capture backends an error of this kind blocks: Dynamo's own problems block only tc_piecewise (breakable
    and full run the forward as Python, no torch.compile); what fails any capture blocks all three."""

    def plan(self) -> Optional[Callable[..., Any]]:
        """The fix planner, imported now (None when the kind has none)."""
        if not self.planner:
            return None
        module, _, name = self.planner.partition(":")
        return getattr(importlib.import_module(module), name)


_REGISTRY: dict[str, Kind] = {}


def declare(kind: Kind) -> Kind:
    """Register ``kind`` (a second declaration of a name replaces the first, as a reload does)."""
    _REGISTRY[kind.name] = kind
    return kind


def get(name: str) -> Kind:
    """The kind called ``name``; an unknown name (a report from a newer version) gets a plain kind."""
    return _REGISTRY.get(name) or Kind(name, name, "", "")


def known(name: str) -> bool:
    return name in _REGISTRY


def all_kinds() -> list[Kind]:
    """Every declared kind, in declaration order (the docs' order)."""
    return list(_REGISTRY.values())


def details_of(name: str) -> type[Details]:
    """The details record of a kind (``Details`` for categories and unknown kinds)."""
    return get(name).details


TC = ("tc_piecewise",)


def blocked_backends(item: Any) -> tuple[str, ...]:
    """The backends a graph break or an error finding blocks (its kind's ``blocks``, refined by its details: a host
    sync blocks none of the backends it runs eagerly under; a capture or replay failure blocks the backend it ran)."""
    if hasattr(item, "category"):  # a graph break: only torch.compile meets it
        return get(item.category).blocks
    d = getattr(item, "details", None)
    if isinstance(d, HostSyncDetails) and d.eager_under:
        return tuple(b for b in get(item.kind).blocks if b not in d.eager_under)
    if isinstance(d, CaptureDetails):
        return (d.backend,)
    return get(item.kind).blocks


def stops_run(name: str) -> bool:
    """A kind that ends the run early (its exit code overrides the verdict's)."""
    return get(name).exit_code is not None


DATA_PTR = declare(Kind(
    "data_ptr",
    blocks=TC,
    title='Address reads (`data_ptr()`)',
    severity='graph break (error) when reached; warning when in a branch not taken; info when guarded',
    means='Dynamo cannot compare addresses of fake tensors, so a `data_ptr()` comparison breaks the graph. Worse, a '
          'captured graph would bake the address of the capture-time tensor in. sglang PR 23351 hit this in a rope '
          'helper that checked `src.data_ptr() == dst.data_ptr()`.',
    example='if src.data_ptr() == dst.data_ptr():\n    rotated = rotated.clone()',
    fix='if not torch.compiler.is_compiling() and src.data_ptr() == dst.data_ptr():\n    rotated = rotated.clone()',
    planner="pcg_inspect.fix:plan_data_ptr",
    advisory=True,
))

declare(Kind(
    "missing_fake_impl",
    blocks=TC,
    title='Op without a fake / meta kernel (graph-break category)',
    severity='graph break (error); a `custom_op` with no fake impl makes Dynamo raise (`dynamo_error`)',
    means='Dynamo runs every op on fake tensors to learn output shapes. An extension op registered with only a '
          'CPU/CUDA kernel (`NotImplementedError: ... attempted to run this operator with Meta tensors`) breaks the '
          'graph.',
    example='torch.ops.sgl_kernel.fp8_blockwise_scaled_mm(a, b, sa, sb, torch.bfloat16)',
    fix='@torch.library.register_fake("sgl_kernel::fp8_blockwise_scaled_mm")\ndef _(a, b, sa, sb, out_dtype):\n    '
        'return a.new_empty((a.shape[0], b.shape[1]), dtype=out_dtype)',
    planner="pcg_inspect.fix:plan_fake",
    break_category=True,
))

UNREGISTERED_OP = declare(Kind(
    "unregistered_op",
    blocks=TC,
    title='Unregistered or opaque op',
    severity='error',
    means='An op with no fake kernel, or a library call Dynamo cannot trace (pybind functions, JIT-kernel loaders '
          "such as flashinfer's, which reach `posix.stat` / `subprocess`). The report gives the user line that "
          'calls it, the library frame Dynamo reached, and a fake impl derived from the shapes seen in an eager '
          'run.',
    example='h = flashinfer.norm.rmsnorm(h, self.weight, eps=1e-6)',
    fix='@torch.library.custom_op("mylib::rmsnorm", mutates_args=())\ndef rmsnorm(x: torch.Tensor, w: torch.Tensor, '
        'eps: float) -> torch.Tensor:\n    return flashinfer.norm.rmsnorm(x, w, '
        'eps=eps)\n\n@rmsnorm.register_fake\ndef _(x, w, eps):\n    return torch.empty_like(x)',
    details=OpDetails,
    decision='wrapping a kernel call as a custom op needs its true output shapes and the arguments it writes: paste '
             'the wrapper shown by `trace` after checking them against the kernel',
    planner="pcg_inspect.fix:plan_fake",
))

FAKE_IMPL_MISMATCH = declare(Kind(
    "fake_impl_mismatch",
    blocks=TC,
    title='Fake impl that lies',
    severity='error',
    means="The fake impl's output shape, dtype, device, strides or storage offset differ from what the kernel "
          'returns. Dynamo plans every later shape from the fake, so the captured graph allocates wrong buffers or '
          "capture fails; a stride that differs fails Inductor's `assert_size_stride` or a later `view` (pytorch "
          '183713: a column-major kernel output behind a contiguous fake).',
    example='@topk.register_fake\ndef _(scores, k):\n    return scores.new_empty((scores.shape[0], 8))  # kernel '
            'returns [T, 16]',
    fix='@topk.register_fake\ndef _(scores, k):\n    return scores.new_empty((scores.shape[0], k), '
        'dtype=torch.int32)',
    details=OpDetails,
    planner="pcg_inspect.fix:plan_fake",
))

UNDECLARED_MUTATION = declare(Kind(
    "undeclared_mutation",
    blocks=TC,
    title='Undeclared mutation',
    severity='error',
    means='The kernel writes to an argument that `mutates_args` does not list (values are compared before and after '
          'the call, so `.data` writes count). Under AOT/inductor a call whose result is unused can be dropped or '
          'reordered, and the compiled model silently differs from eager (sglang PR 23468).',
    example='@torch.library.custom_op("ns::store", mutates_args=())\ndef store(k: torch.Tensor, cache: '
            'torch.Tensor) -> None:\n    cache[:k.shape[0]] = k',
    fix='@torch.library.custom_op("ns::store", mutates_args=("cache",))',
    details=OpDetails,
    planner="pcg_inspect.fix:plan_mutates",
))

declare(Kind(
    "output_aliases_input",
    blocks=TC,
    title='Output aliases an input',
    severity='error',
    means='A custom op returns a view of (or the same storage as) an input. Custom ops must return fresh tensors; '
          'inside a captured graph the alias changes when the input buffer is reused. `torch.library.custom_op` '
          'refuses it when called (the eager forward fails); a `Library` op or a C++ kernel returns it silently.',
    example='def op(x: torch.Tensor) -> torch.Tensor:\n    return x.view(-1)',
    fix='return x.view(-1).clone()  # or write into a declared mutable output',
    details=OpDetails,
    planner="pcg_inspect.fix:plan_alias",
))

declare(Kind(
    "overdeclared_mutation",
    blocks=TC,
    title='Over-declared mutation',
    severity='warning; error for mutates_args="unknown"',
    means='An argument is declared mutable (`mutates_args`, schema `Tensor(a!)`) but the kernel never wrote it in '
          'the eager run. Functionalization then copies it at every call for nothing; with `mutates_args="unknown"` '
          'every argument counts as written and lowering leaves `auto_functionalized` wrappers behind (ROCm/aiter '
          '2780: `auto_functionalized_v2 was not removed`).',
    example='@torch.library.custom_op("ns::scale", mutates_args="unknown")\ndef scale(x: torch.Tensor) -> '
            'torch.Tensor:\n    return x * 2',
    fix='@torch.library.custom_op("ns::scale", mutates_args=())',
    details=OpDetails,
    planner="pcg_inspect.fix:plan_mutates",
))

HOST_SYNC = declare(Kind(
    "host_sync",
    title='Host sync inside a captured piece',
    severity='error',
    means='An op in a captured (non-split) piece reads device memory on the host or sizes its output by tensor '
          'values: `.item()`, `int()`/`float()`/`bool()` of a tensor, `.tolist()`, `nonzero`, a boolean-mask index, '
          '`unique`, `bincount`, `repeat_interleave` with tensor repeats and no `output_size`, `.cpu()`. sglang '
          'compiles with fullgraph=True, which keeps these in the graph as unbacked sizes (no graph break), and '
          'CUDA-graph capture of the piece then fails on the host sync (vllm-ascend 16457, vLLM 36519). Found in '
          "the traced graph, inside a custom op's kernel (eager run), and in code Dynamo never reached. A host sync "
          'in a split op is fine: split pieces run eagerly.',
    example='n = int(lens.sum().item())\nreturn hidden[:n]',
    fix='Compute the size before forward and pass it in, use a static bound with masking, pass output_size= to '
        'repeat_interleave, or make the op a split op. For `repeat_interleave`, when one shape expression of the '
        'calling frame (e.g. `topk_ids.numel()`, `x.shape[0] * self.top_k`) equalled the total at every call of the '
        "eager run, at two or more token counts, the finding's fix passes it as `output_size=` (and `pcg-inspect "
        'fix` applies it); keep it only if it holds by construction, since the GPU does not check it.',
    details=HostSyncDetails,
    planner="pcg_inspect.fix:plan_host_sync",
))

declare(Kind(
    "buffer_assignment",
    blocks=TC,
    title='Buffer or tensor attribute assigned in forward',
    severity='error',
    means='forward rebinds a module buffer or tensor attribute (`self.cos_sin_cache = '
          'self.cos_sin_cache.to(dtype)`). Dynamo writes a graph output back into the module after the graph, which '
          'vLLM rejects under CUDA graphs ("Assigning / modifying buffers ... not allowed", vLLM 33663) and which '
          'changes module state between capture and replay.',
    example='self.cos_sin_cache = self.cos_sin_cache.to(query.dtype)',
    fix='cos_sin_cache = self.cos_sin_cache.to(query.dtype)  # a local; convert the buffer once at load time',
    details=BufferDetails,
    planner="pcg_inspect.fix:plan_local_buffer",
))

declare(Kind(
    "split_output_address",
    blocks=TC,
    title='Split op returning a new tensor',
    severity='warning',
    means='Captured graphs read their inputs at the addresses seen during capture; sglang does not copy them (its '
          'debug mode asserts they are unchanged). A split op that returns a new tensor read by the next captured '
          'piece hands that graph memory the eager allocator may give to another tensor at replay: garbage or an '
          'illegal memory access.',
    example='idx = indexer_topk(scores, k)        # split op returns a new tensor',
    fix='idx = torch.empty(T, k, dtype=torch.int32, device=scores.device)\nindexer_topk(scores, k, idx)  # '
        'mutates_args=("out",), as vLLM\'s unified_attention_with_output',
    details=SplitOutputDetails,
    advisory=True,
))

SHAPE_SPECIALIZATION = declare(Kind(
    "shape_specialization",
    blocks=TC,
    title='Shape specialisation (recompile)',
    severity='warning',
    means='A recompile because a size was baked in: the 0/1 specialisation at T=1 (expected with '
          '`maybe_mark_dynamic`, sglang meets it at decode), a token dim compiled static at the first size (an '
          'input carrying the token dim not marked, e.g. tensors passed across a graph break), or a branch on '
          '`x.shape[0]`.',
    example='if x.shape[0] > 64:\n    y = y * 2',
    fix='Mark every input that carries the token dim (pcg-inspect does, as sglang does); do not branch on it; use '
        'torch._dynamo.mark_unbacked (--dynamic unbacked) to share one graph with T=1.',
    details=GuardDetails,
    advisory=True,
))

PYTHON_STATE_GUARD = declare(Kind(
    "python_state_guard",
    title='Guard on Python state',
    severity='warning',
    means='A guard pins a Python value into the captured graph: it failed between calls (an int attribute '
          'incremented in forward, an `is None` check on an optional input; sglang saw recompiles after capture '
          'from `layer_transfer_counter is None`), or, from the guard list even without a recompile, it reads a '
          'global such as a per-batch context flag (sglang PR 37190: `is_extend_in_batch` made every shape '
          'recompile after capture).',
    example='self.step += 1\nreturn self.lin(x) * self.step',
    fix='Pass the value as a tensor input, keep it constant during capture, or move the state change out of forward.',
    details=GuardDetails,
    advisory=True,
))

RECOMPILE = declare(Kind(
    "recompile",
    blocks=TC,
    title='Other recompile',
    severity='warning',
    means='A guard failed between calls for another reason; each recompile is another graph to capture.',
    fix='Read the guard text in the finding and make that value stable across calls.',
    details=GuardDetails,
    advisory=True,
))

declare(Kind(
    "data_dependent",
    title='Data-dependent control flow (graph-break category)',
    severity='graph break (error)',
    means='A branch on tensor values (`if x.max() < k:`) cannot be captured: the graph would contain one path. '
          'sglang meets it where MHA/MLA or dense/sparse attention is chosen at run time.',
    example='if positions.max() < TOPK:\n    ...dense...\nelse:\n    ...sparse...',
    fix='Decide the branch outside the captured region (a Python flag set before forward, as sglang forces one '
        'attention path under PCG), or make it branch-free with torch.where.',
    decision='a branch on tensor values: decide which path runs under PCG (a Python flag set before capture, as '
             'sglang forces one attention path) or make it branch-free with torch.where; pcg-inspect cannot pick '
             'the path',
    break_category=True,
))

declare(Kind(
    "side_effect",
    blocks=TC,
    title='Side effects in forward (graph-break category)',
    severity='graph break (error)',
    means='Logging, printing, warnings in forward break the graph (sglang PR 19573: `Logger not supported`). Delete '
          'the statement or run it only in eager; never wrap a Python builtin in a custom op.',
    example='logger.info("tokens=%d", x.shape[0])',
    fix='if not torch.compiler.is_compiling():\n    logger.info("tokens=%d", x.shape[0])',
    planner="pcg_inspect.fix:plan_side_effect",
    break_category=True,
))

declare(Kind(
    "opaque_call",
    blocks=TC,
    title='Opaque call into compiled code (graph-break category)',
    severity='graph break (error); also an unregistered_op finding with a custom-op wrapper',
    means='Dynamo followed a call into a kernel library it cannot trace: a pybind function, a JIT-kernel loader '
          'that reaches `os.stat` / `subprocess` / `threading.Lock` (flashinfer, sglang 23386). The fix is a custom '
          'op around the call, so the graph holds it as one node.',
    example='h = flashinfer.norm.rmsnorm(h, self.weight, eps=1e-6)',
    fix='Wrap the kernel call as a custom op with mutates_args and a fake impl (register_custom_op).',
    decision='wrapping a kernel call as a custom op needs its true output shapes and the arguments it writes: paste '
             'the wrapper shown by `trace` after checking them against the kernel',
    break_category=True,
))

declare(Kind(
    "host_call",
    blocks=TC,
    title='Host query or helper in forward (graph-break category)',
    severity='graph break (error)',
    means='forward calls host-side code that is not a kernel: a device or memory query that returns a non-tensor '
          '(`torch.cuda.get_device_name`, sglang PR 10062), a standard-library helper (`bisect`, `threading`), or '
          "an `lru_cache`'d platform probe that imports an optional module (sglang 39054: Dynamo ignores "
          '`lru_cache` and the import fails). A custom-op wrapper is the wrong fix: the value does not change per '
          'batch.',
    example='if has_fast_kernels():  # @lru_cache probe: try: import fast_kernels ...',
    fix='Hoist it out of forward: compute it once in __init__ or at module import and keep the result.',
    planner="pcg_inspect.fix:plan_hoist",
    break_category=True,
))

declare(Kind(
    "unsupported_python",
    blocks=TC,
    title='Unsupported Python (graph-break category)',
    severity='graph break (error)',
    means='A Python construct Dynamo cannot trace: `copy.deepcopy` of a tensor, `sorted` with tensor keys, a break '
          'inside an active context manager (sglang PR 18184).',
    example='y = copy.deepcopy(x)',
    fix='y = x.clone()  # tensor ops instead of Python object machinery',
    decision='a Python construct Dynamo cannot trace: rewrite it with tensor ops (x.clone() for copy.deepcopy, '
             'torch.stack + argsort for sorting by tensor values)',
    break_category=True,
))

declare(Kind(
    "dynamo_error",
    blocks=TC,
    title='Dynamo error',
    severity='error',
    means='Dynamo raised instead of breaking (e.g. a torch.library.custom_op with no register_fake raises '
          'TorchRuntimeError even with fullgraph=False). The whole frame fell back to eager; under sglang this is '
          'the launch-time crash.',
    example='@torch.library.custom_op("ns::op", mutates_args=())\ndef op(x: torch.Tensor) -> torch.Tensor: ...',
    fix='@op.register_fake\ndef _(x):\n    return torch.empty_like(x)',
    details=ErrorDetails,
    planner="pcg_inspect.fix:plan_fake",
))

CAPTURE_FAILED = declare(Kind(
    "capture_failed",
    title='CUDA-graph capture failed at an op',
    severity='error',
    means='On a GPU, a captured piece failed CUDA-graph capture (or its first replay). pcg-inspect captures as '
          "sglang's piecewise backend does and runs each piece node by node, so the report names the op and the "
          "user line, and keeps the *primary* error (the one raised inside capture, not the 'operation failed due "
          "to a previous error during capture' that follows). Errors that surface only when capture ends are pinned "
          'by capturing growing prefixes of the piece. The fix follows the cause: a host sync, a pageable '
          'host-to-device copy, a workspace keyed by the CUDA stream, work on another stream, a device synchronize.',
    example='scale = float(x.abs().max())  # inside a custom op of a captured piece',
    fix='Compute the value before forward and pass it in, or make the op a split op so it runs eagerly.',
    details=CaptureDetails,
    summary="failed CUDA graph capture",
))

REPLAY_MISMATCH = declare(Kind(
    "replay_mismatch",
    title='A replayed piece differs from eager, first at an op',
    severity='error',
    means='The piece captured, but its replay gives another result than running it eagerly on the same inputs. The '
          'report names the first node whose value differs and the likely cause: a Python value baked in at '
          'capture, an input whose address changed since capture, host memory read at the captured address, an '
          'uninitialised buffer, RNG state. On the CPU, where nothing is captured, a piece that gives another '
          'result when re-run on its recorded inputs is reported the same way (sglang 13469 / 17839: `<pad><pad>` '
          'output).',
    example="STATE['calls'] += 1\nreturn x * float(STATE['calls'])  # in a custom op's kernel",
    fix='Pass the value in as a tensor, keep it constant from capture on, or make the op a split op.',
    details=CaptureDetails,
    summary="differs from eager after replay",
))

HOST_STATE = declare(Kind(
    "host_state",
    title='An op that reads host state (eager is not a function of its inputs)',
    severity='error',
    means='Two eager calls on identical inputs (buffers and RNG state put back, deterministic algorithms on) give '
          'different results, first at this op. An op that reads a Python counter, dict or per-step flag inside its '
          'kernel replays the capture-time value forever under a CUDA graph, and nothing fails: the output is just '
          'wrong (sglang 17839: GSM8K 0.855 -> 0.75 under PCG; 13469: `<pad>` garbage). It also defeats any check '
          'against eager, which differs from call to call, so a replay cannot be called ok. Causes: `host_state` '
          '(same inputs, another output), `rng` (a random op on a generator of its own), `host_tensor` (an input '
          'built from a Python value), `path` (the second call ran other ops), `output` (only the forward\'s output '
          'differed).',
    example='STEP = {"n": 0}\n\n@torch.library.custom_op("ns::scale", mutates_args=())\ndef scale(x: torch.Tensor, w: '
            'torch.Tensor) -> torch.Tensor:\n    STEP["n"] += 1\n    return x * w[STEP["n"] % w.shape[0]]',
    fix='# pass the value in as a device tensor that the engine updates before each replay\nstep = torch.zeros((), '
        'dtype=torch.long, device=x.device)  # a static buffer\nout = torch.ops.ns.scale(x, w, step)',
    decision='the op reads state a CUDA graph freezes at capture: decide where the value comes from on each step (a '
             'device tensor the engine updates before replay, an input of forward), or make the op a split op that '
             'runs eagerly',
    details=ReproDetails,
))

NON_FINITE = declare(Kind(
    "non_finite",
    title='NaN or Inf in the forward',
    severity='error',
    means='An op turned finite inputs into NaN or Inf in eager. NaN compares as no difference, so a replay check '
          'would read `ok, max abs err 0` on garbage; the report names the first op that produced it instead.',
    example='return torch.log(x - x.max())  # log(0) = -inf',
    fix='Clamp or rescale before the op (torch.clamp_min(x, eps)), compute in float32, check for 0 before dividing.',
    decision='a NaN/Inf that eager produces too: fix the arithmetic (overflow, log/div of 0) before judging capture',
    details=ReproDetails,
))

PARAM_DATA_MUTATION = declare(Kind(
    "param_data_mutation",
    title='A parameter rewritten through `.data` in forward',
    severity='error',
    means='forward writes a parameter in place through `.data` or `set_` (`self.weight.data *= mask`). Dynamo and '
          'AOT turn it into a storage swap, so the weight\'s address changes on every compiled call and a captured '
          'graph keeps reading the old storage (pytorch 183313); in eager it compounds on every call.',
    example='def forward(self, x):\n    self.weight.data *= self.mask\n    return x @ self.weight.t()',
    fix='w = self.weight * self.mask  # keep the mask as a buffer and multiply\nreturn x @ w.t()',
    decision='decide whether the rewrite belongs at load time (do it once, outside forward) or is a per-call mask '
             '(keep the mask as a buffer and multiply)',
    details=ParamDetails,
))

COMPILE_DIVERGENCE = declare(Kind(
    "compile_divergence",
    blocks=TC,
    title='The compiled forward drops a side effect the eager one has',
    severity='error',
    means='One call at the same size, eager and compiled: a module attribute, buffer, list or global that the eager '
          'forward changes is left unchanged (or changed otherwise) by the compiled one. No graph break, the same '
          'tensors, and the served model silently differs from the one you tested: typically a branch on '
          '`torch.compiler.is_compiling()` that skips forward hooks, activation capture or a counter (pytorch 173452).',
    example='if not torch.compiler.is_compiling():\n    self.captured.append(h.detach())  # activation capture',
    fix='self.captured.append(h.detach())  # the same in both, or move it out of the compiled region',
    decision='decide whether the effect belongs in the served model: keep it for both (no is_compiling() branch) or '
             'move it out of the compiled region',
    details=DivergenceDetails,
))

STALE_BREAK_ARG = declare(Kind(
    "stale_break_arg",
    blocks=("breakable",),
    title='A break point fed a per-call value (breakable replays the capture-time one)',
    severity='error',
    means="Under sglang's breakable backend each `@eager_on_graph` call (attention, the indexer, MoE all-to-all) "
          'ends a segment, runs once at capture and is then replayed as a closure over its *capture-time* arguments '
          "(`eager_on_graph`'s contract: arguments keep their identity, tensors live in static buffers, request state "
          'is read inside the function). A Python value that changes per call (a step counter, a length read on the '
          'host) or a tensor rebuilt outside the static buffers is frozen at capture: capture succeeds and every '
          'replay uses the old value — wrong output, nothing fails. Found by calling the forward twice with other '
          'inputs and comparing what each break point was given (`seen: predicted`, any device), and on the GPU by '
          'the replay itself (`seen: replay`).',
    example='self.step += 1\nreturn scaled(self.proj(x), self.step)  # scaled: a break point',
    fix='# keep per-step state in a static device buffer the engine updates before each replay\n'
        'self.step_buf.fill_(step)                   # outside the graph, before replay\n'
        'out = scaled(self.proj(x), self.step_buf)   # the break reads the buffer when it runs',
    decision='the break point takes a value that changes per call: move the read inside the eager function (request '
             'state from the batch), or pass a device tensor that lives in a static buffer the engine updates',
    details=BreakArgDetails,
))

BAKED_BREAK_OUTPUT = declare(Kind(
    "baked_break_output",
    blocks=("breakable",),
    title='A break point returning a Python value (breakable bakes it into the next segments)',
    severity='error',
    means="An `@eager_on_graph` function returns a non-tensor (an int, a list of lengths) that the rest of the "
          "forward uses. At replay sglang copies a break's new *tensor* outputs into the captured ones; a Python "
          'value cannot be copied, and the segments after the break were captured with the capture-time value '
          '(a slice length, a loop count, a branch). Reported when the value changed between two calls with other '
          'inputs.',
    example='@eager_on_graph\ndef count(x):\n    return int((x > 0).sum())\n...\nn = count(x)\nreturn h[:n]',
    fix='Return a tensor from the break and keep the captured shapes independent of it (mask instead of slicing), '
        'or compute the value before the captured forward.',
    decision='the forward after the break depends on a value the break computes: return it as a tensor and keep the '
             'captured shapes independent of it, or compute it before the graph',
    details=BreakArgDetails,
))

OUTPUT_STRUCTURE = declare(Kind(
    "output_structure",
    blocks=("breakable", "full"),
    title='Output structure that changes with the size',
    severity='error',
    means="sglang's breakable and full backends copy the forward's output into one shared buffer allocated for the "
          'largest size and slice it per size: the output must have the same structure (containers, tensors, their '
          'dims after the first, dtypes) at every size. A forward that returns another structure at another size '
          "does not fit that buffer. tc_piecewise returns each compiled graph's own output and is not affected.",
    example='return (h, aux) if x.shape[0] > 16 else h',
    fix='Return the same structure at every size, with only the first dim varying.',
    decision='the output changes structure with the size: make every size return the same structure',
    details=OutputStructureDetails,
))

declare(Kind(
    "rank_divergence",
    title='Ranks that disagree (tensor parallel)',
    severity='error',
    means='With --nproc N, a rank traced another graph than rank 0 (other breaks, recompiles, split points, piece '
          'shapes or replay status), failed, or did not finish. Under TP every rank captures its own graph: a '
          'difference means a hang in a collective or wrong output.',
    example='h = F.gelu(h) if dist.get_rank() == 1 else F.silu(h)',
    fix='Make every rank trace the same code: no branch on the rank or on rank-local state in forward.',
    details=RankDetails,
))

declare(Kind(
    "tp_mismatch",
    title='Sharded output differs from the single-rank layer',
    severity='error',
    means="A rank's output at the largest size differs from the same target built at world_size=1: the shards or "
          'the collectives do not add up to the full layer.',
    fix='Check which projections are column- vs row-parallel and that every row-parallel output is all-reduced.',
    details=TpMismatchDetails,
))

TIMEOUT = declare(Kind(
    "timeout",
    title='The run hit --timeout',
    severity='error (exit code 4)',
    means='The target did not finish within --timeout seconds (default 600). The report names the stage and the '
          "target's frames where it was; a forward that never returns (a loop on a tensor value, a wait on another "
          "rank, Dynamo unrolling an endless loop) hangs the engine's capture too.",
    example='while x.sum() > 0:\n    x = x - 1',
    fix='Fix the loop or the wait; raise --timeout if the target is only slow (0 = no limit).',
    details=TimeoutDetails,
    decision='the target does not finish: fix the loop or the wait',
    exit_code=4,
))

TARGET_EXIT = declare(Kind(
    "target_exit",
    title='The target ended the process',
    severity='error (exit code 2)',
    means="The target's import, factory or forward ended the process instead of returning: sys.exit, os._exit, a "
          'signal it sent itself, or a crash (segfault, abort) in a kernel it called. The run stops there; the '
          "report holds what finished before, the stage, the exit code or signal and the target's line when it is "
          'known. An engine that imports the layer ends the same way.',
    example="args = parser.parse_args()   # at import: exits on pcg-inspect's own arguments",
    fix='Return or raise instead of exiting; keep argument parsing and exits under `if __name__ == "__main__":`; a '
        "crash inside a kernel is that kernel's bug (run it alone to reproduce).",
    details=TargetExitDetails,
    decision='the target ends the process (sys.exit, os._exit, a signal): make it return or raise instead',
    exit_code=2,
))

declare(Kind(
    "target_error",
    title='Target error',
    severity='error',
    means='The target raises even in eager (wrong input shapes, a bug): fix it before tracing. It is reported as '
          "the target's error at its line, not as a graph break.",
    details=ErrorDetails,
    decision='the target itself fails (eagerly): fix the bug or the inputs first',
    planner="pcg_inspect.fix:plan_target_error",
))

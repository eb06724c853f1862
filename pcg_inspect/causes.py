"""Why capture fails or replay differs, by cause: how to recognise each one and what the user should do.

Shared by the analysis (host syncs found in the traced graph) and the replay (errors raised
inside CUDA-graph capture, pieces that differ after replay), so one cause always gets one fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCALAR_SYNC = ("item", "_local_scalar_dense", "tolist", "__bool__", "__int__", "__float__", "is_nonzero")
"""Ops that read one device value on the host (``.item()``, ``int(t)``, ``bool(t)``, ``.tolist()``)."""
SHAPE_SYNC = ("nonzero", "masked_select", "unique", "_unique2", "unique_consecutive", "bincount", "argwhere",
              "nonzero_static_fallback", "masked_scatter")
"""Ops whose output size depends on tensor values (the host must read it)."""
HOST_COPY = ("cpu", "numpy", "_copy_to_host")
"""Ops that copy a device tensor to the host."""


@dataclass(frozen=True)
class Cause:
    """One cause: its name, what happens, and the fix (prose) plus paste-ready code where there is one."""

    name: str
    what: str
    hint: str


CAUSES = {
    "scalar": Cause("scalar", "reads a device value on the host (a sync) inside a captured piece",
                    "Compute the value before forward and pass it in (a Python int or a tensor the graph reads), use a "
                    "static bound with masking, or make this op a split op so it runs eagerly between captured pieces."),
    "dynamic_shape": Cause("dynamic_shape", "sizes its output by tensor values, so the host must read them inside a captured piece",
                           "Use a static upper bound (nonzero_static / a fixed-size topk, masking the padding) so the shape "
                           "does not depend on data, or make the op a split op so it runs eagerly."),
    "repeat_interleave": Cause("repeat_interleave", "reads the sum of its tensor repeats on the host (repeat_interleave without output_size)",
                               "Pass output_size= the exact total of the repeats, from sizes known before forward "
                               "(e.g. num_tokens * top_k): torch.repeat_interleave(x, repeats, dim=0, output_size=total). "
                               "If the total is not fixed by construction, make the op a split op."),
    "cond": Cause("cond", "branches on a device value (torch.cond with a tensor predicate), so the host reads the "
                  "predicate at every call inside a captured piece",
                  "Decide the branch before forward (a Python bool set before capture), or compute both branches and pick "
                  "with torch.where, so nothing is read on the host; else make the op a split op."),
    "host_copy": Cause("host_copy", "copies a device tensor to the host inside a captured piece",
                       "Keep the value on the device, or move the host copy out of the compiled forward."),
    "pageable_copy": Cause("pageable_copy", "copies a pageable host tensor to the GPU inside capture",
                           "Build the tensor once in __init__ (register_buffer) so the graph reads device memory, or pin "
                           "it (.pin_memory()) and refill it in place: the graph re-reads the same host address at every replay."),
    "stream_state": Cause("stream_state", "uses state (a workspace, a handle) set up for another CUDA stream",
                          "sglang warms up and captures on its capture stream, not the default stream: key the workspace by "
                          "device instead of by stream, or create it lazily for the current stream outside capture (the "
                          "warm-up call on the capture stream runs before capture)."),
    "other_stream": Cause("other_stream", "launches or waits on work on another stream without joining it to the capture stream",
                          "Fork and join side streams through events recorded on the capture stream "
                          "(s.wait_stream(torch.cuda.current_stream()) ... torch.cuda.current_stream().wait_stream(s)), or move "
                          "the op out of the captured piece (make it a split op)."),
    "stream_sync": Cause("stream_sync", "synchronises the device or a stream inside capture",
                         "Remove the synchronize (a captured graph cannot wait on the host), or make the op a split op."),
    "kernel_sync": Cause("kernel_sync", "does something a capturing stream does not allow (a host sync or a device synchronize in its kernel)",
                         "Make the op a split op so it runs eagerly, or remove the host read / synchronize from its kernel."),
    "nested_capture": Cause("nested_capture", "runs compiled code that captures or replays CUDA graphs of its own (a "
                            "torch.compile mode=\"reduce-overhead\" helper, a torch.cuda.graph) or compiles during capture: "
                            "a CUDA graph inside the engine's CUDA graph",
                            "Inside ops run plain code: call the helper uncompiled or compile it without CUDA graphs "
                            "(torch.compile(fn) or mode=\"max-autotune-no-cudagraphs\"), and call it at every shape before "
                            "capture so nothing compiles while the engine captures."),
    "oom": Cause("oom", "ran out of GPU memory during capture",
                 "Capture fewer or smaller sizes, or free memory before capture (a smaller --tokens list shows where it starts)."),
    "unknown": Cause("unknown", "failed inside CUDA-graph capture",
                     "Run the op eagerly between captured pieces (make it a split op) and check what its kernel does on the host."),
    # replay differs from eager
    "baked_value": Cause("baked_value", "reads Python state at run time, so the captured graph replays the value seen at capture",
                         "Pass the value in as a tensor, keep it constant from capture on, or make the op a split op."),
    "stale_address": Cause("stale_address", "reads an input whose address changed since capture",
                           "Make the producer write into a buffer allocated in a captured piece (mutates_args), as vLLM's "
                           "unified_attention_with_output does."),
    "host_read": Cause("host_read", "reads host memory at the address seen during capture",
                       "A captured copy re-reads the same pinned host buffer at every replay: refill that buffer in place "
                       "before each replay, never allocate a new one."),
    "uninitialised": Cause("uninitialised", "reads a buffer nothing wrote (torch.empty)",
                           "Write the buffer before it is read (zeros, or the op that fills it) inside the same forward."),
    "stale_break_arg": Cause("stale_break_arg", "is a break that breakable replays with its capture-time arguments",
                             "Keep a break's arguments fixed from capture on: tensors in the runner's static buffers, and "
                             "per-call state read inside the eager function (from a buffer the runner updates before "
                             "replay), never passed in as a Python value computed in forward."),
    "rng": Cause("rng", "draws random numbers: a replay repeats or shifts the captured RNG state",
                 "Gate dropout on self.training (eval mode under serving) or register the generator with the graph."),
}


def host_sync_cause(op: str) -> str:
    """The cause of a host-sync op name ('' when it is not one)."""
    name = op.rsplit(".", 1)[-1] if op.count(".") else op
    base = op.split(".")[1] if op.startswith("aten.") and op.count(".") >= 1 else name
    for candidate in (base, name, op.lstrip(".")):
        if candidate in SCALAR_SYNC:
            return "scalar"
        if candidate in SHAPE_SYNC:
            return "dynamic_shape"
        if candidate.startswith("repeat_interleave"):
            return "repeat_interleave"
        if candidate in HOST_COPY:
            return "host_copy"
    return ""


_ERROR_RULES = (
    ("nested_capture", r"prepare for replay during capturing|during capturing stage|capture.* already (underway|in progress)"),
    ("pageable_copy", r"unless the CPU tensor is pinned|pageable"),
    ("stream_state", r"workspace|handle .*stream|for the current (CUDA )?stream|not initiali[sz]ed for"),
    ("other_stream", r"unjoined|isolation|cudaErrorStreamCaptureUnjoined|another stream|cudaErrorStreamCaptureIsolation"),
    ("stream_sync", r"[Ss]ynchroniz"),
    ("oom", r"out of memory|OutOfMemory"),
)


COMPILED_CODE = ("/torch/_inductor/", "cudagraph_trees")
"""Paths in a capture error's traceback that mean Inductor-compiled code ran (or compiled) inside the capture
(``torch/_dynamo`` frames are no sign: a GraphModule's call passes through Dynamo's wrappers)."""


def capture_error_cause(error: str, op: str, syncs_inside: bool = False, frames: tuple[str, ...] = ()) -> str:
    """The cause of an error raised inside capture, from its text, the op it was raised at and (``frames``) the files
    on its traceback."""
    for cause, pattern in _ERROR_RULES:
        if re.search(pattern, error):
            return cause
    if any(part in f for f in frames for part in COMPILED_CODE):
        return "nested_capture"
    sync = host_sync_cause(op)
    if sync:
        return sync
    if syncs_inside or "not permitted when stream is capturing" in error or "cudaErrorStreamCaptureUnsupported" in error:
        return "kernel_sync"
    return "unknown"


def mismatch_cause(op: str, reads_host: bool, reads_empty: bool, is_custom: bool) -> str:
    """The likely cause of the first node whose replayed value differs from eager."""
    name = op.lower()
    if any(r in name for r in ("rand", "dropout", "bernoulli", "normal_", "uniform_", "multinomial")):
        return "rng"
    if reads_host:
        return "host_read"
    if reads_empty:
        return "uninitialised"
    return "baked_value" if is_custom else "unknown"

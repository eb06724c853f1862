"""Stage 1, load: resolve ``file.py:factory`` / ``pkg.mod:factory``, call the factory, build inputs.

The factory returns an ``nn.Module``, ``(module, args)`` or ``(module, args, kwargs)``. If it
accepts a ``tokens`` keyword it is called once per capture size; the module of the first call is
traced at every size (sglang compiles one model), later calls only contribute inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import TargetError, one_line
from .options import FLOAT_DTYPES, ModelOptions, OptionError


@dataclass
class Call:
    """Inputs for one capture size, and which dims of which tensors carry the token count."""

    tokens: int | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    token_dims: dict[str, int] = field(default_factory=dict)
    """Input path (e.g. 'args[0]', "kwargs['positions']") -> token dim."""


@dataclass
class Target:
    """A loaded target: live module and inputs (not a report record; it holds tensors)."""

    spec: str
    module: Any
    calls: list[Call]
    split_ops: tuple[str, ...]
    """Split ops the target's module declares in ``SPLIT_OPS``."""
    roots: tuple[str, ...]
    """Folders whose files count as user code (the target file's folder / package)."""
    factory_file: str
    factory_line: int
    fixed_inputs: bool = False
    """The factory takes no ``tokens``: one call at its inputs' own token count."""
    entry: tuple[str, int, str] = ("", 0, "")
    """(file, line, function) of the first ``forward`` in the user's code (for a model: the decoder layer's, in its
    ``modeling_*.py``): where a finding goes when the frame Dynamo compiled is pcg-inspect's own wrapper."""
    break_ops: tuple[str, ...] = ()
    """breakable's break ops the target declares in ``BREAK_OPS`` (a model: its attention, as sglang's
    RadixAttention.forward is an ``@eager_on_graph`` function)."""


def load(
    spec: str,
    capture_sizes: tuple[int, ...],
    device: str = "cpu",
    dtype: str | None = None,
    model_options: ModelOptions | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Target:
    """Load a target and build its inputs for each capture size.

    Args:
        spec: ``path/to/file.py:factory``, ``package.module:factory``, or a model (bundled config
            name, folder with config.json, hub id) built by ``pcg_inspect.models``.
        capture_sizes: token counts, used when the factory takes ``tokens``.
        rank, world_size: passed to the factory when it takes them (tensor parallel).
        device: 'cpu' or 'cuda'; passed to the factory if it takes ``device``, else applied with ``.to``.
        dtype: torch dtype name; passed as ``dtype`` if accepted, else floating tensors are cast.
    Returns:
        The Target.
    Raises:
        TargetError: any problem locating, importing or calling the factory, or a bad return value.
    """
    from . import models

    mod: Any = None
    if models.is_model_spec(spec):
        factory, model_split_ops = models.make_factory(spec, model_options or ModelOptions(), world_size)
        roots = _transformers_roots()
    else:  # model options on a file target were refused before the run (run.precheck)
        mod, factory, roots = _factory_of(spec)
        model_split_ops = ()
    split_ops = tuple(getattr(mod, "SPLIT_OPS", ()) or ()) + tuple(model_split_ops)
    target = _from_factory(spec, factory, capture_sizes, device, dtype, split_ops, roots, rank=rank, world_size=world_size)
    # a model's attention is sglang's RadixAttention.forward, an @eager_on_graph function; its TP all-reduce is not
    target.break_ops = tuple(getattr(mod, "BREAK_OPS", ()) or ()) + tuple(o for o in model_split_ops if o == _ATTENTION_OP)
    return target


_ATTENTION_OP = "pcg_inspect::attention"
"""``models.attention.SPLIT_OP`` (not imported here: it imports torch)."""


def _from_factory(spec: str, factory: Callable[..., Any], capture_sizes: tuple[int, ...], device: str, dtype: str | None,
                  split_ops: tuple[str, ...], roots: tuple[str, ...], **extra: Any) -> Target:
    """Call the factory as a target's factory is called (``tokens``, ``device``, ``dtype`` and ``extra`` when it takes them)."""
    torch_dtype = _torch_dtype(dtype) if dtype else None
    params = _parameters(factory)
    offered = {"device": device, "dtype": torch_dtype, **extra}
    module, calls, fixed = _build(spec, factory, params, {k: v for k, v in offered.items() if k in params and v is not None},
                                  capture_sizes)
    file, line = _source_of(factory)
    target = Target(spec, module, calls, split_ops, roots, file, line, fixed, _entry(module, roots))
    return _placed(target, device, torch_dtype, cast_module="dtype" not in params)


def _entry(module: Any, roots: tuple[str, ...]) -> tuple[str, int, str]:
    """The largest submodule (by parameters) whose ``forward`` is the user's code — the module itself for a file
    target, the decoder layer for a model — as (file, line, 'Class.forward')."""
    import inspect

    from .frames import is_user_file, own_file

    best: tuple[int, tuple[str, int, str]] = (-1, ("", 0, ""))
    for sub in module.modules():
        fwd = getattr(type(sub), "forward", None)
        try:
            fwd = inspect.unwrap(fwd) if fwd is not None else None  # decorators (transformers wraps forwards)
            file = inspect.getsourcefile(fwd) if fwd is not None else None
            lines, line = inspect.getsourcelines(fwd) if file else ([], 0)
            line += next((i for i, text in enumerate(lines) if text.lstrip().startswith(("def ", "async def "))), 0)
        except (OSError, TypeError):
            continue
        if file and not own_file(file) and is_user_file(file, roots):
            size = sum(p.numel() for p in sub.parameters())
            if size > best[0]:
                best = (size, (file, line, f"{type(sub).__name__}.forward"))
    return best[1]


def _placed(target: Target, device: str, torch_dtype: Any, cast_module: bool = True) -> Target:
    """The module and every input on ``device`` (floating values in ``torch_dtype``), token dims found."""
    target.module = _place(target.module, device, torch_dtype if cast_module else None)
    for c in target.calls:
        c.args = tuple(_place_value(a, device, torch_dtype) for a in c.args)
        c.kwargs = {k: _place_value(v, device, torch_dtype) for k, v in c.kwargs.items()}
    _infer_token_dims(target.calls)
    return target


def load_object(obj: Any, args: Any, kwargs: Any, capture_sizes: tuple[int, ...], device: str = "cpu",
                dtype: str | None = None) -> Target:
    """A target given as a Python object (the API): a module (with ``args``/``kwargs`` as fixed inputs, or
    inputs built per size like a bare module's), or a factory called like a ``file.py:factory`` target.

    Raises:
        TargetError: the object is neither, or the factory failed.
    """
    import torch

    spec = getattr(obj, "__qualname__", type(obj).__qualname__)
    source = obj if not isinstance(obj, torch.nn.Module) else type(obj)
    file, line = _source_of(source)
    roots = (str(Path(file).resolve().parent),) if file else ()
    mod = sys.modules.get(getattr(source, "__module__", ""), None)
    split_ops = tuple(getattr(mod, "SPLIT_OPS", ()) or ())
    break_ops = tuple(getattr(mod, "BREAK_OPS", ()) or ())
    if not isinstance(obj, torch.nn.Module):
        if not callable(obj):
            raise TargetError(f"the target must be an nn.Module, a factory or a target string, got {type(obj).__name__}")
        return dataclasses.replace(_from_factory(spec, obj, capture_sizes, device, dtype, split_ops, roots), break_ops=break_ops)
    if args is None and kwargs is None:
        calls = [Call(t, _default_inputs(spec, obj, t), {}) for t in capture_sizes]
    else:
        args = args if isinstance(args, (tuple, list)) else (args,)
        calls = [Call(_fixed_tokens(tuple(args), dict(kwargs or {})), tuple(args), dict(kwargs or {}))]
    fixed = args is not None or kwargs is not None
    return _placed(Target(spec, obj, calls, split_ops, roots, file, line, fixed, break_ops=break_ops), device, _torch_dtype(dtype) if dtype else None)


def _factory_of(spec: str) -> tuple[Any, Callable[..., Any], tuple[str, ...]]:
    mod, attr, roots = _import_target(spec)
    factory = getattr(mod, attr, None)
    if factory is None:
        raise TargetError(f"{spec}: {spec.rpartition(':')[0]} has no attribute {attr!r}")
    if not callable(factory):
        raise TargetError(f"{spec}: {attr!r} is not callable (got {type(factory).__name__})")
    return mod, factory, roots


def _build(spec: str, factory: Callable[..., Any], params: set[str], base: dict[str, Any],
           capture_sizes: tuple[int, ...]) -> tuple[Any, list[Call], bool]:
    """(module, one Call per size, fixed inputs?) from the factory.

    A factory taking ``tokens`` is called per size (its first module is traced at every size); a
    bare module gets inputs built at every size; fixed inputs give one size, their token count.
    """
    import torch

    if "tokens" in params:
        module, calls = None, []
        for tokens in capture_sizes:
            torch.manual_seed(0)
            m, args, kwargs = _normalise(spec, _call_factory(spec, factory, {**base, "tokens": tokens}), tokens)
            module = module if module is not None else m
            calls.append(Call(tokens, args, kwargs))
        return module, calls, False
    torch.manual_seed(0)
    result = _call_factory(spec, factory, base)
    if isinstance(result, torch.nn.Module):
        return result, [Call(t, _default_inputs(spec, result, t), {}) for t in capture_sizes], False
    module, args, kwargs = _normalise(spec, result, None)
    return module, [Call(_fixed_tokens(args, kwargs), args, kwargs)], True


def _fixed_tokens(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The token count of fixed inputs: dim 0 of the first tensor that has one."""
    import torch

    for v in list(args) + list(kwargs.values()):
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    return 1


def _transformers_roots() -> tuple[str, ...]:
    # For a model target the code to edit is transformers' modeling files: count them as user code.
    import transformers

    return (str(Path(transformers.__file__).resolve().parent / "models"),)


def _import_target(spec: str) -> tuple[Any, str, tuple[str, ...]]:
    if ":" not in spec:
        raise TargetError(
            f"target {spec!r} must be 'path/to/file.py:factory' or 'package.module:factory'"
        )
    where, _, attr = spec.rpartition(":")
    if not where or not attr.isidentifier():
        raise TargetError(f"target {spec!r}: expected 'file.py:factory' or 'module:factory'")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise TargetError(f"target file not found: {where}")
        return _import_file(path), attr, (str(path.parent),)
    try:
        mod = importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise TargetError(f"cannot import module {where!r}: no module named {exc.name!r}") from None
        raise TargetError(f"importing {where!r} failed: {one_line(exc)}") from exc
    except Exception as exc:  # the user's module raised while importing
        raise TargetError(f"importing {where!r} failed: {one_line(exc)}") from exc
    top = importlib.import_module(where.split(".")[0])
    roots = tuple(str(Path(p).resolve()) for p in getattr(top, "__path__", [])) or (
        str(Path(getattr(mod, "__file__", ".")).resolve().parent),
    )
    return mod, attr, roots


def _import_file(path: Path) -> Any:
    # One module per file path, reused: re-executing a file would re-register its custom ops.
    name = "_pcg_target_" + path.stem + "_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
    if name in sys.modules:
        return sys.modules[name]
    mod_spec = importlib.util.spec_from_file_location(name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise TargetError(f"cannot import {path}: not a Python file")
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = mod
    sys.path.insert(0, str(path.parent))
    try:
        mod_spec.loader.exec_module(mod)
    except Exception as exc:
        del sys.modules[name]
        raise TargetError(f"importing {path} failed: {one_line(exc)}{_where_raised(exc, path)}") from exc
    finally:
        try:
            sys.path.remove(str(path.parent))
        except ValueError:
            pass
    return mod


def _call_factory(spec: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return factory(**kwargs)
    except Exception as exc:
        file, _ = _source_of(factory)
        raise TargetError(
            f"factory {spec} raised {one_line(exc)}{_where_raised(exc, Path(file) if file else None)}"
        ) from exc


def _normalise(spec: str, result: Any, tokens: int | None) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    import torch

    if isinstance(result, torch.nn.Module):
        return result, _default_inputs(spec, result, tokens), {}
    if isinstance(result, tuple) and len(result) in (2, 3) and isinstance(result[0], torch.nn.Module):
        args = result[1]
        if isinstance(args, torch.Tensor):
            args = (args,)
        if not isinstance(args, (tuple, list)):
            raise TargetError(f"factory {spec} returned args of type {type(args).__name__}; expected a tuple")
        kwargs = result[2] if len(result) == 3 else {}
        if not isinstance(kwargs, dict):
            raise TargetError(f"factory {spec} returned kwargs of type {type(kwargs).__name__}; expected a dict")
        return result[0], tuple(args), dict(kwargs)
    raise TargetError(
        f"factory {spec} returned {type(result).__name__}; expected an nn.Module, "
        "(module, args) or (module, args, kwargs)"
    )


def _default_inputs(spec: str, module: Any, tokens: int | None) -> tuple[Any, ...]:
    # A bare module: ask it (example_inputs), else infer from its first Embedding / Linear.
    import torch

    t = tokens or 8
    if hasattr(module, "example_inputs"):
        out = module.example_inputs(t)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
    for sub in module.modules():
        if isinstance(sub, torch.nn.Embedding):
            return (torch.randint(0, sub.num_embeddings, (t,)),)
        if isinstance(sub, torch.nn.Linear):
            return (torch.randn(t, sub.in_features),)
    raise TargetError(
        f"factory {spec} returned a bare module whose inputs cannot be inferred; "
        "return (module, args) or give the module an example_inputs(tokens) method"
    )


def _infer_token_dims(calls: list[Call]) -> None:
    # A dim carries the token count if its size equals the capture size at every size.
    sized = [c for c in calls if c.tokens is not None]
    for c in calls:
        for path, t in _tensors(c):
            for d in range(t.dim()):
                if all(_dim_of(o, path, d) == o.tokens for o in sized):
                    c.token_dims[path] = d
                    break


def _dim_of(call: Call, path: str, dim: int) -> int | None:
    for p, t in _tensors(call):
        if p == path:
            return int(t.shape[dim]) if dim < t.dim() else None
    return None


def _tensors(call: Call) -> list[tuple[str, Any]]:
    import torch

    out = [(f"args[{i}]", a) for i, a in enumerate(call.args) if isinstance(a, torch.Tensor)]
    out += [(f"kwargs[{k!r}]", v) for k, v in call.kwargs.items() if isinstance(v, torch.Tensor)]
    return out


def tensor_at(call: Call, path: str) -> Any:
    """The tensor an input path names ('args[0]' or "kwargs['x']")."""
    for p, t in _tensors(call):
        if p == path:
            return t
    raise KeyError(path)


def _place(module: Any, device: str, dtype: Any) -> Any:
    module = module.to(device)
    if dtype is not None:
        module = module.to(dtype)
    return module.eval()


def _place_value(v: Any, device: str, dtype: Any) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        v = v.to(device)
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
    return v


def _torch_dtype(name: str) -> Any:
    import torch

    if name not in FLOAT_DTYPES:
        raise OptionError("dtype", f"must be a floating type: float32, bfloat16 or float16 (got {name!r})")
    return getattr(torch, FLOAT_DTYPES[name])


def _parameters(fn: Callable[..., Any]) -> set[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return set()
    return {n for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _source_of(fn: Any) -> tuple[str, int]:
    try:
        return inspect.getsourcefile(fn) or "", inspect.getsourcelines(fn)[1]
    except (TypeError, OSError):
        return "", 0


def _where_raised(exc: BaseException, path: Path | None) -> str:
    # Point at the deepest frame in the target's own file, if any.
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        mine = [f for f in frames if Path(f.filename).resolve() == path.resolve()]
        if mine:
            return f" (at {mine[-1].filename}:{mine[-1].lineno})"
    if frames:
        return f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return ""

"""Model targets: decoder layers built from a config with transformers, random weights, no full model.

MODEL is a bundled config name (``pcg-inspect models``), a folder holding ``config.json``, or a hub
id ``org/name`` whose ``config.json`` is in the local hub cache (only that file is ever read,
never weights). ``load`` turns it into the same factory shape a ``file.py:factory`` target has.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..deadline import shielded
from ..errors import TargetError, UsageError
from ..options import ModelOptions, parse_layers

__all__ = ["ModelOptions", "bundled", "is_model_spec", "read_config", "apply_overrides", "parse_layers", "make_factory"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@lru_cache(maxsize=1)
def bundled() -> dict[str, dict[str, Any]]:
    """Bundled configs by name (read once; do not mutate)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(CONFIG_DIR.glob("*.json"))}


def is_model_spec(spec: str) -> bool:
    """A model target: a bundled name, a folder with config.json, or an org/name hub id."""
    if ":" in spec or spec.endswith(".py"):
        return False  # file.py:factory / module:factory: decided without reading any config
    if (CONFIG_DIR / f"{spec}.json").is_file():
        return True
    if os.path.isdir(spec):
        return os.path.isfile(os.path.join(spec, "config.json"))
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", spec))


def read_config(spec: str) -> dict[str, Any]:
    """The config dict of a model target (TargetError when it cannot be found)."""
    table = bundled()
    if spec in table:
        return {k: v for k, v in table[spec].items() if not k.startswith("_")}
    if os.path.isdir(spec):
        return _read_json(os.path.join(spec, "config.json"))
    path = _hub_cached_config(spec) or _hub_download_config(spec)
    if path is None:
        raise TargetError(
            f"no config.json for {spec!r} in the local hub cache, and the hub is not reachable; download it "
            f"(hf download {spec} config.json), pass a folder holding config.json, or use a bundled name "
            f"({', '.join(table)})"
        )
    return _read_json(path)


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise TargetError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise TargetError(f"{path} is not a transformers config (no model_type)")
    return data


def _hub_download_config(repo_id: str) -> Optional[str]:
    """Download config.json alone (never weights) when the hub answers; None when offline."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return None
    try:  # a quick look first: hf_hub_download retries for ~20 s when there is no network
        with socket.create_connection(("huggingface.co", 443), timeout=3):
            pass
    except OSError:
        return None
    try:
        from huggingface_hub import hf_hub_download

        return str(hf_hub_download(repo_id, "config.json"))
    except Exception:
        return None


def _hub_cached_config(repo_id: str) -> Optional[str]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return found if isinstance(found, str) else None


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """key=value pairs; values parsed as JSON when they parse (numbers, true, lists), else strings."""
    out = dict(config)
    for item in overrides:
        key, _, raw = item.partition("=")  # well-formed: ModelOptions.validate checked it
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:  # nested keys: text_config.hidden_size=256
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def make_factory(spec: str, opts: ModelOptions, world_size: int = 1) -> tuple[Callable[..., Any], tuple[str, ...]]:
    """A factory ``(tokens, device, dtype) -> (module, args, kwargs)`` and the split ops it needs.

    Raises:
        TargetError: transformers missing, unknown model_type, layer out of range.
    """
    try:
        with shielded():  # a library import is never interrupted by --timeout
            import transformers  # noqa: F401
            from transformers import AutoConfig
    except ImportError:
        raise TargetError("model targets need transformers: pip install 'pcg-inspect[models]'") from None
    raw = apply_overrides(read_config(spec), opts.overrides)
    model_type = raw.get("model_type")
    try:
        config = AutoConfig.for_model(model_type, **{k: v for k, v in raw.items() if k != "model_type"})
    except KeyError as exc:
        raise TargetError(f"{spec}: transformers does not know model_type {model_type!r} ({exc})") from None
    except Exception as exc:  # transformers validates the values: a bad --override lands here
        given = f" (with --override {' '.join(opts.overrides)})" if opts.overrides else ""
        raise TargetError(f"{spec}: invalid config{given}: {_whole(exc)}") from exc
    config = getattr(config, "text_config", None) or config
    is_moe = any(getattr(config, k, None) for k in ("num_experts", "n_routed_experts", "num_local_experts"))
    if is_moe and hasattr(config, "_experts_implementation") and not any(
        o.startswith("_experts_implementation=") for o in opts.overrides
    ):
        config._experts_implementation = "grouped_mm"  # what the model's own from_config picks
    split_ops: tuple[str, ...] = ()
    if opts.attn == "split":
        from .attention import SPLIT_OP, register

        config._attn_implementation = register()
        split_ops = (SPLIT_OP,)
    else:
        config._attn_implementation = opts.attn
    layer_ids = [] if opts.num_layers > 0 else parse_layers(opts.layers)
    if layer_ids and max(layer_ids) >= config.num_hidden_layers:
        raise TargetError(f"{spec} has {config.num_hidden_layers} layers; --layers {opts.layers} is out of range")
    if world_size > 1:  # row-parallel projections end with an in-place all-reduce, a split op
        split_ops += (_tp_split_op(),)
    return _Factory(spec, config, layer_ids, opts.num_layers), split_ops


def _tp_split_op() -> str:
    from .build import ALL_REDUCE

    return ALL_REDUCE


class _Factory:
    """``(tokens, device, dtype, rank, world_size) -> (module, args)``: the module is built once, later
    calls only make inputs (a full-size layer is built once per run, not once per capture size)."""

    def __init__(self, spec: str, config: Any, layer_ids: list[int], num_layers: int) -> None:
        self.spec, self.config, self.layer_ids, self.num_layers = spec, config, layer_ids, num_layers
        self.module: Any = None

    def __call__(self, tokens: int = 8, device: str = "cpu", dtype: Any = None, rank: int = 0, world_size: int = 1) -> Any:
        import torch

        dtype = dtype or torch.float32
        if self.module is None:
            self.module = self._build(device, dtype, rank, world_size)
        hidden, positions = _inputs(self.config, tokens, device, dtype)
        if self.num_layers > 0:
            gen = torch.Generator(device=device)
            gen.manual_seed(tokens)
            ids = torch.randint(0, self.config.vocab_size, (1, tokens), device=device, generator=gen)
            return self.module, (ids,)
        return self.module, (hidden, positions)

    def _build(self, device: str, dtype: Any, rank: int, world_size: int) -> Any:
        plan = dict(getattr(self.config, "base_model_tp_plan", None) or {}) if world_size > 1 else None
        if world_size > 1 and self.num_layers > 0:
            raise UsageError("--nproc with --num-layers is not supported: trace decoder layers (--layers) across ranks")
        if world_size > 1 and not plan:
            raise UsageError(f"tensor parallel: {self.spec}'s config has no base_model_tp_plan to shard by")
        if self.num_layers > 0:
            return _whole_model(self.config, self.num_layers, device, dtype)
        return _layers(self.config, self.layer_ids, device, dtype, plan, rank, world_size)


def _whole(exc: BaseException) -> str:
    """The exception's message on one line (transformers puts the reason after a colon and a newline)."""
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())[:300]


def _modeling(config: Any) -> Any:
    import importlib

    mt = config.model_type
    for name in (mt, mt.replace("_text", "")):
        try:
            with shielded():
                return importlib.import_module(f"transformers.models.{name}.modeling_{name}")
        except ImportError:
            continue
    raise TargetError(f"cannot find transformers.models.{mt}.modeling_{mt}")


def _class(mod: Any, suffix: str, config: Any) -> Any:
    cands = [getattr(mod, n) for n in dir(mod) if n.endswith(suffix) and "Vision" not in n and "Audio" not in n]
    if not cands:
        raise TargetError(f"{mod.__name__} has no *{suffix} class")
    text = [c for c in cands if "Text" in c.__name__]
    return (text or cands)[0]


def layer_stack(layers: Any, rotary: Any, layer_types: Sequence[Optional[str]], windows: Sequence[int]) -> Any:
    """Decoder layers run in sequence, as the model's forward runs them: per-layer rotary embeddings
    (layer_type for models with local/global rope) and a causal (or sliding-window) mask built
    from the token count, so no input but hidden states and positions carries the token dim."""
    import inspect

    import torch
    import torch.nn as nn

    takes_type = "layer_type" in inspect.signature(rotary.forward).parameters

    class _Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(layers)
            self.rotary_emb = rotary

        def forward(self, hidden_states: Any, position_ids: Any) -> Any:
            t = hidden_states.shape[1]
            i = torch.arange(t, device=hidden_states.device).unsqueeze(1)
            j = torch.arange(t, device=hidden_states.device).unsqueeze(0)
            for layer, layer_type, window in zip(self.layers, layer_types, windows):
                if takes_type:
                    position_embeddings = self.rotary_emb(hidden_states, position_ids, layer_type)
                else:
                    position_embeddings = self.rotary_emb(hidden_states, position_ids)
                allowed = (j <= i) & ((i - j < window) if window > 0 else (j >= 0))
                mask = torch.zeros(t, t, dtype=hidden_states.dtype, device=hidden_states.device)
                mask = mask.masked_fill(~allowed, torch.finfo(hidden_states.dtype).min)[None, None]
                out = layer(hidden_states, attention_mask=mask, position_ids=position_ids,
                            position_embeddings=position_embeddings)
                hidden_states = out[0] if isinstance(out, tuple) else out
            return hidden_states

    return _Stack()


def _inputs(config: Any, tokens: int, device: str, dtype: Any) -> tuple[Any, Any]:
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(tokens)
    hidden = torch.randn(1, tokens, config.hidden_size, device=device, dtype=dtype, generator=gen) * 0.5
    return hidden, torch.arange(tokens, device=device).unsqueeze(0)


def _layers(config: Any, layer_ids: list[int], device: str, dtype: Any, plan: Optional[dict[str, str]], rank: int,
            world_size: int) -> Any:
    from .build import materialise, params_on_meta

    mod = _modeling(config)
    layer_cls = _class(mod, "DecoderLayer", config)
    rope_cls = _class(mod, "RotaryEmbedding", config)
    with params_on_meta():
        layers = [layer_cls(config, layer_idx=i) for i in layer_ids]
    try:
        rotary = rope_cls(config=config)
    except TypeError:
        rotary = rope_cls(config)
    types = list(getattr(config, "layer_types", None) or [])
    layer_types = [types[i] if i < len(types) else None for i in layer_ids]
    window = int(getattr(config, "sliding_window", 0) or 0)
    windows = [window if (t or "").startswith("sliding") else 0 for t in layer_types]
    model = layer_stack(layers, rotary, layer_types, windows)
    materialise(model, device, dtype, _std(config), plan, rank, world_size)
    return model.to(device)  # the buffers (rotary frequencies), computed in __init__, stay as built


def _whole_model(config: Any, num_layers: int, device: str, dtype: Any) -> Any:
    import copy

    import torch

    with shielded():
        from transformers import AutoModel

    from .build import materialise, params_on_meta

    cfg = copy.deepcopy(config)
    cfg.num_hidden_layers = num_layers
    for key in ("layer_types", "mlp_layer_types", "indexer_types"):
        value = getattr(cfg, key, None)
        if isinstance(value, list):
            setattr(cfg, key, value[:num_layers])
    with params_on_meta():
        model = AutoModel.from_config(cfg)
    materialise(model, device, dtype, _std(cfg))
    model = model.to(device)
    model.config.use_cache = False

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any) -> Any:
            return self.model(input_ids=input_ids, use_cache=False).last_hidden_state

    return Forward()


def _std(config: Any) -> float:
    return float(getattr(config, "initializer_range", 0.02) or 0.02)

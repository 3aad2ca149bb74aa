"""The decoder registry. Built-ins register exactly as third-party decoders will
(`@register_decoder`; later also the `decbench.decoders` entry-point group)."""

from __future__ import annotations

import dataclasses
import importlib
from importlib.metadata import entry_points

from decbench.decoders.base import Decoder
from decbench.errors import unknown

_REGISTRY: dict[str, type[Decoder]] = {}
_BUILTINS = [
    "decbench.decoders.greedy",
    "decbench.decoders.sampling",
    "decbench.decoders.speculative.draft_model",
    "decbench.decoders.speculative.prompt_lookup",
    "decbench.decoders.speculative.lookahead",
    "decbench.decoders.speculative.recycling",
    "decbench.decoders.speculative.aded",
    "decbench.decoders.speculative.medusa",
    "decbench.decoders.speculative.eagle",
    "decbench.decoders.speculative.eagle2",
    "decbench.decoders.speculative.sam",
    "decbench.decoders.speculative.sam_eagle",
    "decbench.decoders.speculative.spectr",
    "decbench.decoders.speculative.rsd",
    "decbench.decoders.speculative.rsd_s",
    "decbench.decoders.speculative.dynamic_exit",
    "decbench.decoders.contrastive",
    "decbench.decoders.momentum",
    "decbench.decoders.beam",
    "decbench.decoders.grid_beam",
    "decbench.decoders.ead",
    "decbench.decoders.ffn_skip",
    "decbench.decoders.cntp",
    "decbench.decoders.adadec",
    "decbench.decoders.hf_greedy",
    "decbench.decoders.hf_sample",
    "decbench.decoders.hf_pld",
    "decbench.decoders.hf_assisted",
    "decbench.decoders.llamacpp_greedy",
    "decbench.decoders.llamacpp_pld",
    "decbench.decoders.dllm_confidence",
    "decbench.decoders.dllm_dingo",
    "decbench.decoders.dllm_threshold",
    "decbench.decoders.dllm_prophet",
    "decbench.decoders.dllm_credit",
    "decbench.decoders.dllm_freedave",
]
_loaded = False


def register_decoder(cls: type[Decoder]) -> type[Decoder]:
    name = cls.spec.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"decoder '{name}' registered twice")
    check_declarations(cls)
    _REGISTRY[name] = cls
    return cls


def check_declarations(cls: type[Decoder]) -> None:
    """What a spec promises, its Options must carry: a method that needs_draft names its draft
    model in a `draft: str` option (run.check_profile checks that name before loading)."""
    fields = {f.name: f for f in dataclasses.fields(cls.Options)}
    if cls.spec.needs_draft and "draft" not in fields:
        raise ValueError(f"decoder '{cls.spec.name}' needs_draft but has no `draft` option")


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTINS:
        importlib.import_module(module)
    for ep in entry_points(group="decbench.decoders"):
        ep.load()


def get_decoder(name: str) -> type[Decoder]:
    _load_all()
    if name not in _REGISTRY:
        raise unknown("method", name, _REGISTRY)
    return _REGISTRY[name]


def all_decoders() -> list[type[Decoder]]:
    _load_all()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]

"""Decoders: one file per method, registered by name (registry.py).

The names below load on first use, so importing decbench.decoders.options (the declared ranges,
which decbench.settings uses too) does not import base.py, which imports decbench.settings."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Decoder": "base",
    "DecoderContext": "base",
    "MethodSpec": "base",
    "Request": "base",
    "all_decoders": "registry",
    "get_decoder": "registry",
    "register_decoder": "registry",
}

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'decbench.decoders' has no attribute '{name}'")
    return getattr(importlib.import_module(f"decbench.decoders.{_HOMES[name]}"), name)

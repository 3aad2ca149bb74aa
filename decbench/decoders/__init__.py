"""Decoders: one file per method, registered by name (registry.py)."""

from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import all_decoders, get_decoder, register_decoder

__all__ = [
    "Decoder",
    "DecoderContext",
    "MethodSpec",
    "Request",
    "all_decoders",
    "get_decoder",
    "register_decoder",
]

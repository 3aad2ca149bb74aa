"""Batch > 1: the entry point that decodes several requests as one ragged batch.

A method offers batching by declaring `MethodSpec.batches` and building a per-request plan
(`Decoder.plan`: its own proposer instance and acceptance rules); the ragged batch engine
(speculative/batch_engine.py) runs the plans in lockstep on the method's target runner, which
must take per-row cache masks (backends/ragged.py). Greedy and sampling plan an empty draft.
Everything else (lossy methods that own their loop, diffusion, the hf-* and llama.cpp rows)
refuses with one error: "method X runs at batch 1 only".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from decbench.backends.capabilities import BACKENDS, RAGGED_BATCHES
from decbench.errors import ConfigError

if TYPE_CHECKING:
    from decbench.decoders.base import Decoder, Request
    from decbench.results import GenerationResult


def check_batches(
    decoder_cls: type[Decoder], runner: object | None = None, backend: str | None = None
) -> None:
    """Refuse a method, a backend (by name, at plan time) or a runner that cannot decode a
    batch, before anything runs."""
    if not decoder_cls.spec.batches:
        raise ConfigError(f"method '{decoder_cls.spec.name}' runs at batch 1 only")
    if backend is not None and RAGGED_BATCHES not in BACKENDS.get(backend, frozenset()):
        raise ConfigError(
            f"method '{decoder_cls.spec.name}' batches, but backend '{backend}' runs at batch 1 "
            "only"
        )
    if runner is not None and not hasattr(runner, "gather_slots"):
        name = getattr(runner, "backend", type(runner).__name__)
        raise ConfigError(
            f"method '{decoder_cls.spec.name}' batches, but backend '{name}' runs at batch 1 only"
        )


def decode_batch(decoder: Decoder, requests: list[Request]) -> list[GenerationResult]:
    """The requests as one ragged batch on the decoder's target; results in request order."""
    from decbench.decoders.speculative.batch_engine import run_batch

    check_batches(type(decoder), decoder.target)
    if not requests:
        return []
    plans = [decoder.plan(request, row) for row, request in enumerate(requests)]
    return run_batch(decoder.spec.name, decoder.options, decoder.target, requests, plans)

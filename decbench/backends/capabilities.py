"""What each backend's runner can do beyond the common runner interface, and the plan-time check
that a method's needs are met.

Every runner offers the interface the decoders share (prefill, forward at positions under an
optional tree mask, crop, compact, timers). A method that needs more declares it in
`MethodSpec.requires`; `check_supported` refuses it before any model loads, with one line naming
the backend that has what it needs. Nothing dispatches on method or backend names.
"""

from __future__ import annotations

from collections.abc import Iterable

from decbench.errors import ConfigError

HIDDEN_STATES = "hidden states"  # forward(hidden=True): the last layer's hidden states
TORCH_MODEL = "a torch model"  # runner.model is the transformers module (cache objects, generate)
LLAMA_CPP = "a llama.cpp context"  # llama.cpp's own high-level generate on the same GGUF
RAGGED_BATCHES = "ragged batches"  # forward(past_mask=...), gather_slots, select_rows (batch > 1)

BACKENDS: dict[str, frozenset[str]] = {
    "transformers": frozenset({HIDDEN_STATES, TORCH_MODEL, RAGGED_BATCHES}),
    "llama.cpp": frozenset({LLAMA_CPP}),
}


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ConfigError(f"backend.name: '{name}' is not one of {', '.join(BACKENDS)}")


def check_supported(method: str, requires: Iterable[str], backend: str) -> None:
    """Raise a ConfigError when backend `backend` lacks a capability that `method` requires."""
    check_backend(backend)
    missing = [need for need in requires if need not in BACKENDS[backend]]
    if not missing:
        return
    able = [name for name, has in BACKENDS.items() if all(need in has for need in requires)]
    where = f'; it runs on backend.name = "{able[0]}"' if able else ""
    raise ConfigError(
        f"method '{method}' needs {' and '.join(missing)}, which backend '{backend}' lacks{where}"
    )

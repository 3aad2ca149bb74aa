"""Load a ModelRunner from settings: resolve the name, pick device, dtype and threads."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable

import torch

from decbench.backends import kernels, static
from decbench.backends.runner import ModelRunner
from decbench.backends.special import special_loader
from decbench.errors import ConfigError, ModelError
from decbench.models import resolve
from decbench.settings import BackendSettings, ModelSettings

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(
            f"backend.device: '{name}' is not a device (cpu, cuda, cuda:N, mps)"
        ) from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("backend.device is 'cuda' but torch sees no CUDA device; use 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("backend.device is 'mps' but MPS is not available; use 'cpu'")
    return device


def pick_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"backend.dtype: '{name}' is not one of {', '.join(DTYPES)}")
    return DTYPES[name]


def apply_threads(threads: int) -> None:
    if threads < 0:
        raise ConfigError(f"backend.threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


def load_runner(
    model: ModelSettings,
    backend: BackendSettings,
    progress: Callable[[str], None] | None = None,
) -> ModelRunner:
    """Resolve and load a causal LM with its tokenizer onto the backend's device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    static.check_runner(backend.runner)
    device, dtype = pick_device(backend.device), pick_dtype(backend.dtype)
    apply_threads(backend.threads)
    folder = resolve(model.name, progress)
    remote = model.trust_remote_code
    use_kernels = kernels.wanted(backend.kernels, device, dtype)
    special = special_loader(folder)  # folders written by `decbench quantize` / `distill`
    if special is not None:
        with _quiet_transformers():
            runner = special(model.name, folder, device, dtype)
    else:
        try:
            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote)
                lm = AutoModelForCausalLM.from_pretrained(
                    folder, dtype=dtype, trust_remote_code=remote
                )
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load model '{model.name}' from {folder}: {e}") from e
        runner = ModelRunner(lm.to(device), tokenizer, name=model.name, folder=folder)
    if use_kernels:
        kernels.install(runner.model)
    if backend.runner == "static":
        runner = static.static_runner(runner, backend.compile, progress)
    return runner


@contextlib.contextmanager
def _quiet_transformers():
    """transformers prints load reports and progress bars; decbench owns stderr."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()

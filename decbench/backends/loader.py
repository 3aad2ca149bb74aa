"""Load a ModelRunner from settings: resolve the name, pick device, dtype and threads."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from decbench.backends import kernel_check, kernels, static
from decbench.backends.capabilities import check_backend
from decbench.backends.runner import ModelRunner
from decbench.backends.special import special_loader
from decbench.errors import ConfigError, ModelError, check_choice
from decbench.models import cache_root, damage, heal, resolve
from decbench.settings import BackendSettings, ModelSettings

# what a damaged or unreadable model folder raises from transformers' loaders
LOAD_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, SafetensorError)
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
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
    """Resolve and load a causal LM with its tokenizer onto the backend's device. A cached
    conversion of the embedded model that fails to load is converted again (models.heal)."""
    check_backend(backend.name)
    if backend.name == "llama.cpp":
        from decbench.backends.llamacpp import load_llamacpp_runner

        return load_llamacpp_runner(model, backend, progress)
    static.check_runner(backend.runner)
    device, dtype = pick_device(backend.device), pick_dtype(backend.dtype)
    apply_threads(backend.threads)
    folder = resolve(model.name, progress)
    remote = model.trust_remote_code
    kernels.check_mode(backend.kernels)
    special = special_loader(folder)  # folders written by `decbench quantize` / `distill`
    if special is not None:
        with _quiet_transformers():
            runner = special(model.name, folder, device, dtype)
    else:
        placement = big_model_kwargs(model, device)
        try:
            tokenizer, lm = _load_pretrained(folder, dtype, remote, placement)
        except LOAD_ERRORS as e:
            folder = heal(model.name, f"{type(e).__name__}: {e}", progress)
            if folder is None:
                raise ModelError(_load_failure(model.name, e)) from e
            tokenizer, lm = _load_pretrained(folder, dtype, remote, placement)
        if not placement:
            lm = lm.to(device)
        runner = ModelRunner(lm, tokenizer, name=model.name, folder=folder)
    runner.kernels = kernel_check.choose(runner, backend.kernels, dtype)
    if backend.runner == "static":
        choice = runner.kernels
        runner = static.static_runner(runner, backend.compile, progress)
        runner.kernels = choice
    return runner


def big_model_kwargs(model: ModelSettings, device: torch.device) -> dict[str, Any]:
    """from_pretrained's placement arguments for model.device_map (accelerate's big-model
    inference: layers spread over devices, inputs follow the first layer). {} without one."""
    if not model.device_map:
        if model.max_memory:
            raise ConfigError('model.max_memory applies with model.device_map (e.g. "auto")')
        return {}
    check_choice("model.device_map", model.device_map, DEVICE_MAPS)
    memory = {int(k) if k.isdigit() else k: v for k, v in model.max_memory.items()}
    # layers that fit nowhere go to disk, under the cache folder
    offload = cache_root() / "offload" / hashlib.sha256(model.name.encode()).hexdigest()[:16]
    kwargs: dict[str, Any] = {"device_map": model.device_map, "offload_folder": str(offload)}
    if memory:
        kwargs["max_memory"] = memory
    return kwargs


def _load_pretrained(folder: Path, dtype: torch.dtype, remote: bool, placement: dict[str, Any]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote)
        lm = AutoModelForCausalLM.from_pretrained(
            folder, dtype=dtype, trust_remote_code=remote, **placement
        )
    return tokenizer, lm


def _load_failure(name: str, error: Exception) -> str:
    folder = resolve_quietly(name)
    problem = damage(folder) if folder else None
    if problem:
        return (
            f"model '{name}': the folder {folder} is damaged ({problem}); copy or download it again"
        )
    return f"cannot load model '{name}' from {folder}: {type(error).__name__}: {error}"


def resolve_quietly(name: str) -> Path | None:
    try:
        return resolve(name)
    except ModelError:
        return None


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

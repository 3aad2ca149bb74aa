"""DiffusionRunner: the one interface every masked-diffusion decoder uses to drive a bidirectional
denoiser. It takes a canvas (prompt + generated region, with mask tokens where nothing is decided
yet) and returns logits for every position of the generated region.

Three kinds of model are recognised from their config, never from their name:
- `decbench`: our own small dLLM (decbench/diffusion/model.py), a stock transformers causal LM
  (Llama) whose config carries a `decbench_dllm` table. It runs bidirectionally because every
  forward passes a 4D all-attend mask, which transformers uses as given. It supports block-wise
  prefix (and dual) KV caching as in Fast-dLLM.
- `llada` (LLaDA style, model_type "llada") and `dream` (Dream style, model_type "Dream"):
  HF masked-diffusion models from a local folder, loaded with `trust_remote_code` only when the
  profile's `model.trust_remote_code` is true. Their own code is bidirectional; they run without
  a KV cache here.

`shift`: AR-initialised dLLMs (Dream, ours) keep the causal LM head's habit of predicting the
token *after* each position, so the logits of canvas position i come from position i - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from decbench.backends.compat import cache_kwarg
from decbench.backends.runner import ModelRunner
from decbench.errors import ConfigError

CONFIG_KEY = "decbench_dllm"  # the config.json table that marks a decbench dLLM
CACHE_MODES = ("none", "prefix", "dual")
KNOWN_HF = {"llada": ("llada", 126336, False), "dream": ("dream", 151666, True)}


@dataclass(frozen=True)
class DllmInfo:
    kind: str  # decbench | llada | dream
    mask_token_id: int
    shift: bool  # logits at position i - 1 predict the token at i

    @property
    def supports_cache(self) -> bool:
        return self.kind == "decbench"


def dllm_info(config, name: str = "model") -> DllmInfo:
    """What the config says about the model as a denoiser; ConfigError if it is not one."""
    marker = getattr(config, CONFIG_KEY, None)
    if isinstance(marker, dict) and "mask_token_id" in marker:
        return DllmInfo("decbench", int(marker["mask_token_id"]), bool(marker.get("shift", True)))
    model_type = str(getattr(config, "model_type", "")).lower()
    if model_type in KNOWN_HF:
        kind, default_mask, shift = KNOWN_HF[model_type]
        mask = getattr(config, "mask_token_id", None)
        return DllmInfo(kind, int(mask if mask is not None else default_mask), shift)
    raise ConfigError(
        f"model '{name}' is not a masked-diffusion model: its config has no '{CONFIG_KEY}' "
        f"table and model_type '{model_type}' is not one of {', '.join(KNOWN_HF)}; the dllm-* "
        f"methods need a dLLM (build ours with `make dllm`, then pass --model "
        f"<its folder>), or a LLaDA/Dream folder with model.trust_remote_code = true"
    )


class DiffusionRunner:
    """A bidirectional denoiser over a canvas [batch, n], plus an optional block KV cache.

    `denoise` is a full forward. `begin_block`/`step_block` are Fast-dLLM's block cache: the
    first forward of a block runs the whole canvas and keeps the keys and values of everything
    outside the block's query window (`prefix`: only what lies before it; `dual`: before and
    after); later steps of the block forward only the window (prefix: the window and all that
    follows) against that cache. The cached states are those of the block's first step, which is
    the paper's approximation: exact at each block's first step, approximate after it.
    """

    def __init__(self, model, info: DllmInfo, device: torch.device | None = None) -> None:
        self.model = model.eval()
        self.info = info
        self.device = device or next(model.parameters()).device
        self.forward_calls = 0  # denoiser forwards
        self.rows = 0  # sequences forwarded (a batched forward counts its batch size)
        self._cache: DynamicCache | None = None
        self._window: tuple[int, int] = (0, 0)  # query positions [q0, q1) of the cached block
        self._mode = "none"
        self._cache_kwarg = cache_kwarg(model)

    @classmethod
    def wrap(cls, target: ModelRunner) -> DiffusionRunner:
        return cls(target.model, dllm_info(target.model.config, target.name), target.device)

    @property
    def mask_token_id(self) -> int:
        return self.info.mask_token_id

    # -- full forwards ---------------------------------------------------------------------
    @torch.inference_mode()
    def denoise(self, canvas: torch.Tensor, start: int) -> torch.Tensor:
        """Logits [batch, n - start, vocab] for canvas positions start..n-1 (canvas [batch, n])."""
        q0 = start - self.info.shift
        self._check_start(q0)
        return self._forward(
            canvas, None, torch.arange(canvas.shape[1]), (q0, canvas.shape[1] - self.info.shift)
        )

    # -- Fast-dLLM block cache ---------------------------------------------------------------
    @torch.inference_mode()
    def begin_block(self, canvas: torch.Tensor, start: int, end: int, mode: str) -> torch.Tensor:
        """Full forward at a block's first step; keeps the cache for `step_block`. Returns the
        block's logits [batch, end - start, vocab]."""
        if mode not in CACHE_MODES:
            raise ConfigError(f"cache '{mode}' is not one of {', '.join(CACHE_MODES)}")
        if mode != "none" and not self.info.supports_cache:
            raise ConfigError(
                f"cache = '{mode}' needs a decbench dLLM; {self.info.kind} models run with "
                f"cache = 'none'"
            )
        q0, q1 = start - self.info.shift, end - self.info.shift
        self._check_start(q0)
        cache = DynamicCache(config=self.model.config) if mode != "none" else None
        logits = self._forward(canvas, cache, torch.arange(canvas.shape[1]), (q0, q1))
        self._mode, self._window = mode, (q0, q1)
        if cache is not None:
            n = canvas.shape[1]
            keep = (
                torch.arange(q0)
                if mode == "prefix"
                else torch.cat([torch.arange(q0), torch.arange(q1, n)])
            )
            _select(cache, keep.to(self.device))
        self._cache = cache
        return logits

    @torch.inference_mode()
    def step_block(self, canvas: torch.Tensor) -> torch.Tensor:
        """A later step of the current block: logits [batch, end - start, vocab]."""
        q0, q1 = self._window
        if self._mode == "none" or self._cache is None:
            return self._forward(canvas, None, torch.arange(canvas.shape[1]), (q0, q1))
        stop = canvas.shape[1] if self._mode == "prefix" else q1
        cached = self._cache.get_seq_length()
        logits = self._forward(
            canvas[:, q0:stop], self._cache, torch.arange(q0, stop), (0, q1 - q0)
        )
        self._cache.crop(cached - self._cache.get_seq_length())  # drop the window's keys again
        return logits

    # -- internals ---------------------------------------------------------------------------
    def _check_start(self, q0: int) -> None:
        if q0 < 0:
            raise ConfigError("a shifted dLLM needs at least one prompt token before the canvas")

    def _forward(
        self,
        ids: torch.Tensor,  # [batch, q] tokens to run
        cache: DynamicCache | None,
        positions: torch.Tensor,  # [q] their canvas positions
        keep: tuple[int, int],  # rows [a, b) of the run whose logits are wanted
    ) -> torch.Tensor:
        """Logits [batch, b - a, vocab]; the LM head runs only on the kept rows."""
        ids = ids.to(self.device)
        batch, q = ids.shape
        self.forward_calls += 1
        self.rows += batch
        if self.info.kind != "decbench":
            return self._no_mask(self.model(input_ids=ids).logits[:, keep[0] : keep[1]])
        past = cache.get_seq_length() if cache is not None else 0
        dtype = self.model.dtype
        mask = torch.zeros(batch, 1, q, past + q, dtype=dtype, device=self.device)  # all attend
        out = self.model(
            input_ids=ids,
            position_ids=positions.to(self.device).expand(batch, q),
            attention_mask=mask,
            **{self._cache_kwarg: cache},
            use_cache=cache is not None,
            logits_to_keep=torch.arange(*keep, device=self.device),
        )
        return self._no_mask(out.logits)

    def _no_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """float32 logits on the CPU, with the mask token ruled out: a denoiser never places a
        mask. The canvas and every unmasking rule work on the CPU (a few positions per step), so
        the logits of the rows asked for come there once per forward."""
        logits = logits.float().cpu()
        logits[..., self.info.mask_token_id] = float("-inf")
        return logits


def _select(cache: DynamicCache, keep: torch.Tensor) -> None:
    """Keep only the cached positions `keep` [n_keep], in that order, in every layer."""
    for layer in getattr(cache, "layers", []):
        if getattr(layer, "keys", None) is None:
            continue
        layer.keys = layer.keys.index_select(-2, keep)
        layer.values = layer.values.index_select(-2, keep)

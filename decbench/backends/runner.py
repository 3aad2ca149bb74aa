"""ModelRunner: the one interface every decoder uses to drive a causal LM step by step.

Decoders never call `model.generate`. They prefill, run forwards over new tokens at explicit
positions (optionally under a 4D tree mask), and crop or compact the KV cache themselves. That is
what lets one speculative engine serve every proposer on stock transformers models.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel

from decbench.backends.compat import cache_kwarg, cache_of
from decbench.backends.timing import PhaseTimer, synchronize
from decbench.errors import RunError


@dataclass
class ForwardOutput:
    logits: torch.Tensor  # [batch, n_kept, vocab] float32
    hidden: torch.Tensor | None  # [batch, n, hidden] last layer, when asked for


class ModelRunner:
    """A causal LM, its KV cache and its timers. The batch dimension is kept throughout."""

    backend = "transformers"  # its capabilities: backends/capabilities.py

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer=None,
        name: str = "model",
        folder: Path | None = None,
    ) -> None:
        self.model = model.eval()
        self.folder = folder  # local folder it was loaded from, when there is one
        self.tokenizer = tokenizer
        self.name = name
        self.device = next(model.parameters()).device
        self.timer = PhaseTimer(self.device)
        self.cache: DynamicCache | None = None
        self.forward_calls = 0
        self._cache_kwarg = cache_kwarg(model)
        self.kernels: Any = None  # backends.kernel_check.KernelChoice, set by the loader

    # -- facts about the model -------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def max_context(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)

    @property
    def eos_token_ids(self) -> list[int]:
        """EOS ids from the generation config, falling back to the tokenizer's."""
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None and self.tokenizer is not None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return []
        return list(eos) if isinstance(eos, list | tuple) else [int(eos)]

    @property
    def cache_len(self) -> int:
        if self.cache is None:
            return 0
        return self.cache.get_seq_length()

    # -- phases ------------------------------------------------------------------------------
    def reserve(self, length: int) -> None:
        """The coming request needs up to `length` positions (prompt + new tokens). The
        DynamicCache grows as it goes; runners with a pre-allocated cache size it from this."""

    def reset(self) -> None:
        """Drop the KV cache; the next call must be `prefill`."""
        self.cache = DynamicCache(config=self.model.config)
        self.forward_calls = 0

    def prefill(
        self,
        ids: torch.Tensor,  # [batch, n]
        all_logits: bool = False,
        hidden: bool = False,
        positions: torch.Tensor | None = None,  # [batch, n]; default arange(n)
        tree_mask: torch.Tensor | None = None,  # [batch, n, n] bool (left-padded batches)
    ):
        """Run the prompt `ids` [batch, n] into a fresh cache. Returns logits of the last position
        ([batch, 1, vocab]) or of all positions."""
        self.reset()
        return self.forward(ids, positions, tree_mask, all_logits=all_logits, hidden=hidden)

    @torch.inference_mode()
    def forward(
        self,
        ids: torch.Tensor,  # [batch, n] new tokens, appended to the cache
        positions: torch.Tensor | None = None,  # [batch, n]; default cache_len + arange(n)
        tree_mask: torch.Tensor
        | None = None,  # [batch, n, n] bool: new token i may see new token j
        all_logits: bool = True,
        hidden: bool = False,
        past_mask: torch.Tensor | None = None,  # [batch, past] bool: cached slots each row sees
    ) -> ForwardOutput:
        """One forward over new tokens. `tree_mask` replaces the causal mask among the new tokens;
        every new token sees the whole cache, or, in a ragged batch (backends/ragged.py), the
        slots `past_mask` marks valid for its row."""
        if self.cache is None:
            self.reset()
        ids = ids.to(self.device)
        batch, n = ids.shape
        past = self.cache_len
        if positions is None:
            positions = torch.arange(past, past + n, device=self.device).expand(batch, n)
        kwargs = {}
        if past_mask is not None and tree_mask is None:
            tree_mask = torch.ones(n, n, dtype=torch.bool, device=self.device).tril()
            tree_mask = tree_mask.expand(batch, n, n)
        if tree_mask is not None:
            kwargs["attention_mask"] = self._additive_mask(
                tree_mask.to(self.device), past, past_mask
            )
        with final_hidden(self.model, hidden) as states:
            out = self.model(
                input_ids=ids,
                position_ids=positions.to(self.device),
                **{self._cache_kwarg: self.cache},
                use_cache=True,
                logits_to_keep=0 if all_logits else 1,
                **kwargs,
            )
        self.cache = cache_of(out)
        self.forward_calls += 1
        return ForwardOutput(logits=out.logits.float(), hidden=states[0] if hidden else None)

    def _additive_mask(
        self, tree_mask: torch.Tensor, past: int, past_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[batch, n, n] bool (and [batch, past] valid slots) -> [batch, 1, n, past + n]
        additive float mask (0 = attend)."""
        batch, n, _ = tree_mask.shape
        seen = torch.ones(batch, n, past + n, dtype=torch.bool, device=tree_mask.device)
        seen[:, :, past:] = tree_mask
        if past_mask is not None:
            seen[:, :, :past] = past_mask.to(seen.device)[:, None, :]
        dtype = self.model.dtype
        mask = torch.zeros(seen.shape, dtype=dtype, device=seen.device)
        mask.masked_fill_(~seen, torch.finfo(dtype).min)
        return mask[:, None]

    # -- cache surgery -----------------------------------------------------------------------
    def _layers(self):
        layers = getattr(self.cache, "layers", None)
        if layers is None:
            raise RunError("this transformers version's cache has no per-layer tensors to crop")
        return [layer for layer in layers if getattr(layer, "keys", None) is not None]

    @torch.inference_mode()
    def crop(self, length: int) -> None:
        """Keep the first `length` cached positions (rollback after a rejection)."""
        if self.cache is None or length >= self.cache_len:
            return
        for layer in self._layers():
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]

    @torch.inference_mode()
    def compact(self, start: int, keep: torch.Tensor) -> None:
        """Keep cache[:start] plus the positions `start + keep` (sorted, [n_keep]) in that order;
        drop the rest. Used after tree verification to keep only the accepted path."""
        if self.cache is None:
            return
        index = torch.cat(
            [torch.arange(start, device=self.device), start + keep.to(self.device).long()]
        )
        for layer in self._layers():
            layer.keys = layer.keys.index_select(-2, index)
            layer.values = layer.values.index_select(-2, index)

    @torch.inference_mode()
    def gather_slots(self, index: torch.Tensor) -> None:
        """Ragged compaction: row b keeps cache slots `index[b]` ([batch, m]), in that order, and
        nothing else. Rows of a batch keep their own slots, so this is a gather, not a slice."""
        if self.cache is None:
            return
        index = index.to(self.device).long()
        for layer in self._layers():
            batch, heads, _, dim = layer.keys.shape
            spread = index[:, None, :, None].expand(batch, heads, index.shape[1], dim)
            layer.keys = layer.keys.gather(2, spread)
            layer.values = layer.values.gather(2, spread)

    @torch.inference_mode()
    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows `rows` ([b'], in that order): finished sequences leave."""
        if self.cache is None:
            return
        rows = rows.to(self.device).long()
        for layer in self._layers():
            layer.keys = layer.keys.index_select(0, rows)
            layer.values = layer.values.index_select(0, rows)

    def synchronize(self) -> None:
        synchronize(self.device)


def fork_runner(runner: ModelRunner) -> ModelRunner:
    """A second handle on the same loaded model (weights shared, nothing copied) with a cache
    and a timer of its own: one draft cache per row of a batch."""
    fork = copy.copy(runner)
    fork.cache = None
    fork.timer = PhaseTimer(runner.device)
    fork.forward_calls = 0
    return fork


@contextlib.contextmanager
def final_hidden(model: PreTrainedModel, wanted: bool) -> Iterator[list[torch.Tensor]]:
    """Catch the decoder stack's output (the last layer's hidden states after the final norm,
    [batch, n, hidden]) during one forward, instead of asking for every layer's states."""
    caught: list[torch.Tensor] = []
    if not wanted:
        yield caught
        return

    def hook(module, args, output) -> None:
        caught.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    handle = model.get_decoder().register_forward_hook(hook)
    try:
        yield caught
    finally:
        handle.remove()

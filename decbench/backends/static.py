"""StaticRunner: the runner interface on a pre-allocated KV cache addressed by position, with
compiled forwards at bucketed shapes (CUDA graphs on GPU), in the manner of gpt-fast.

The eager `ModelRunner` grows a transformers `DynamicCache` by concatenation, crops by slicing
and compacts a tree by rewriting every layer. Here every layer's keys and values live in one
tensor of `capacity` slots, allocated once per request:

- a forward over n new tokens writes their keys and values into slots [cache_len, cache_len + n)
  and attends under a boolean mask over all slots: the valid prefix, the new tokens (causally,
  or under the tree mask), nothing else. Unused slots are masked out, so stale rows are harmless;
- rollback (`crop`) moves the length pointer; no tensor is touched;
- tree compaction copies only the accepted rows into place, for all layers in one copy.

Forwards of up to `BUCKETS[-1]` new tokens are padded up to a bucket (padding rows are computed
and dropped) and run through `torch.compile(dynamic=False)`: one graph per bucket, reused across
steps and prompts. The capacity dimension is marked dynamic, so a request that needs a bigger
cache reuses the same graphs (CUDA graphs record once more per capacity). `warm_up` compiles
every bucket at load, ahead of any timing, and records the seconds in `compile_s`. Wider
forwards (long prefills) run eagerly on the same cache. On CUDA the compile mode is
"reduce-overhead" (CUDA graphs). If compiling fails, the runner warns once and stays eager.

Logits come from the decoder stack's final hidden states through the LM head (no per-layer
hidden states); an eager forward computes them only for the rows asked for.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch
from transformers import PreTrainedModel

from decbench.backends.compat import cache_kwarg
from decbench.backends.runner import ForwardOutput, ModelRunner
from decbench.errors import ConfigError, RunError

BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # new-token counts the compiled forward is specialised to
GRAIN = 256  # capacity is a multiple of this many slots
HEADROOM = BUCKETS[-1]  # slots beyond a request's length: padding rows of the last forward


class SlotCache:
    """Keys and values of every layer in one tensor [2, layers, batch, kv_heads, capacity, dim],
    written at the slots set in `slots` before each forward. Duck-types the part of transformers'
    `Cache` that the decoder layers call (`update`)."""

    is_compileable = True

    def __init__(
        self, layers: int, batch: int, kv_heads: int, dim: int, capacity: int, dtype, device
    ) -> None:
        shape = (2, layers, batch, kv_heads, capacity, dim)
        self.kv = torch.zeros(shape, dtype=dtype, device=device)
        self.keys = [self.kv[0, i] for i in range(layers)]  # views [batch, kv_heads, cap, dim]
        self.values = [self.kv[1, i] for i in range(layers)]
        for view in (*self.keys, *self.values):
            torch._dynamo.mark_static_address(view)
            torch._dynamo.mark_dynamic(view, 2)  # one compiled graph serves every capacity
        self.slots = torch.zeros(1, dtype=torch.long, device=device)  # [n] set per forward
        self.length = 0  # valid prefix, in slots

    @property
    def capacity(self) -> int:
        return self.kv.shape[-2]

    @property
    def batch(self) -> int:
        return self.kv.shape[2]

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write the new keys/values [batch, kv_heads, n, dim] at `slots`; return all slots."""
        self.keys[layer_idx].index_copy_(2, self.slots, key)
        self.values[layer_idx].index_copy_(2, self.slots, value)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    # beam search reorders the batch; rare and eager, so a copy is fine
    def batch_repeat_interleave(self, repeats: int) -> None:
        self._take(torch.arange(self.batch, device=self.kv.device).repeat_interleave(repeats))

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self._take(beam_idx.to(self.kv.device))

    def _take(self, rows: torch.Tensor) -> None:
        kv = self.kv.index_select(2, rows)
        length = self.length
        self.__init__(
            kv.shape[1], kv.shape[2], kv.shape[3], kv.shape[5], kv.shape[4], kv.dtype, kv.device
        )
        self.kv.copy_(kv)
        self.length = length


class StaticRunner(ModelRunner):
    """ModelRunner's interface on a SlotCache, with optionally compiled decode forwards."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer=None,
        name: str = "model",
        folder=None,
        compile: bool = True,
        pad: bool | None = None,  # pad to the buckets without compiling (tests); default: compile
    ) -> None:
        super().__init__(model, tokenizer, name=name, folder=folder)
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        self._decoder_cache_kwarg = cache_kwarg(self.decoder)
        config = model.config
        self._softcap = getattr(config, "final_logit_softcapping", None)
        self._layers_n = config.num_hidden_layers
        heads = config.num_attention_heads
        self._kv_heads = getattr(config, "num_key_value_heads", None) or heads
        self._head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        self.cache: SlotCache | None = None
        self.reserved = 0  # slots the coming request asked for (`reserve`)
        self.compile_s = 0.0  # seconds spent compiling (at load, in `warm_up`)
        self.compile_error: str | None = None
        self._compiled: Callable | None = None
        if compile:
            # each bucket and each runner is one more graph of the same function
            dynamo = torch._dynamo.config
            dynamo.recompile_limit = max(dynamo.recompile_limit, 64)
            dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 1024)
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._compiled = torch.compile(self._step, dynamic=False, fullgraph=False, mode=mode)
        self._cudagraphs = compile and self.device.type == "cuda"
        self._pad = compile if pad is None else pad
        self._warm: set[tuple[int, int, int]] = set()  # (batch, bucket, CUDA-graph capacity)

    # -- facts ---------------------------------------------------------------------------------
    @property
    def cache_len(self) -> int:
        return 0 if self.cache is None else self.cache.length

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    # -- allocation ----------------------------------------------------------------------------
    def reserve(self, length: int) -> None:
        """The coming request needs up to `length` positions (prompt + new tokens)."""
        self.reserved = length

    def _allocate(self, batch: int, needed: int) -> None:
        """A cache of at least `needed` + HEADROOM slots. The capacity only grows: the compiled
        graphs take any capacity, but CUDA graphs record once per capacity."""
        old = self.cache
        capacity = -(-(needed + HEADROOM) // GRAIN) * GRAIN
        if old is not None and old.batch == batch and old.capacity >= needed + HEADROOM:
            old.length = 0
            return
        if old is not None:
            capacity = max(capacity, old.capacity)
        limit = self.max_context + HEADROOM
        if needed > self.max_context:
            raise RunError(
                f"'{self.name}' needs {needed} positions but its context is {self.max_context}"
            )
        dtype = self.lm_head.weight.dtype
        self.cache = SlotCache(
            self._layers_n,
            batch,
            self._kv_heads,
            self._head_dim,
            min(capacity, limit),
            dtype,
            self.device,
        )

    # -- phases --------------------------------------------------------------------------------
    def reset(self) -> None:
        if self.cache is not None:
            self.cache.length = 0
        self.forward_calls = 0

    def prefill(
        self,
        ids: torch.Tensor,  # [batch, n]
        all_logits: bool = False,
        hidden: bool = False,
        positions: torch.Tensor | None = None,  # [batch, n]; default arange(n)
        tree_mask: torch.Tensor | None = None,  # [batch, n, n] bool (left-padded batches)
    ):
        ids = ids.to(self.device)
        self._allocate(ids.shape[0], max(self.reserved, ids.shape[1]))
        self.reserved = 0
        self.forward_calls = 0
        return self.forward(ids, positions, tree_mask, all_logits=all_logits, hidden=hidden)

    @torch.inference_mode()
    def forward(
        self,
        ids: torch.Tensor,  # [batch, n] new tokens, appended to the cache
        positions: torch.Tensor | None = None,  # [batch, n]; default cache_len + arange(n)
        tree_mask: torch.Tensor | None = None,  # [batch, n, n] bool: token i may see token j
        all_logits: bool = True,
        hidden: bool = False,
        past_mask: torch.Tensor | None = None,  # [batch, past] bool: cached slots each row sees
    ) -> ForwardOutput:
        ids = ids.to(self.device)
        batch, n = ids.shape
        if self.cache is None or self.cache.batch != batch:
            self._allocate(batch, n)
        cache = self.cache
        past = cache.length
        if positions is None:
            positions = torch.arange(past, past + n, device=self.device).expand(batch, n)
        positions = positions.to(self.device)
        bucket = self._bucket(n)
        if past + max(bucket, n) > cache.capacity:
            self._grow(past + max(bucket, n))
            cache = self.cache
        width = bucket or n
        if width > n:  # pad: extra rows repeat the last token and position; their logits go
            ids = torch.cat([ids, ids[:, -1:].expand(batch, width - n)], dim=1)
            positions = torch.cat([positions, positions[:, -1:].expand(batch, width - n)], dim=1)
        cache.slots = torch.arange(past, past + width, device=self.device)
        mask = self._mask(past, n, width, tree_mask, past_mask)
        # fresh contiguous inference tensors: compiled graphs guard strides and dispatch keys
        dense = torch.contiguous_format
        ids, positions = ids.clone(memory_format=dense), positions.clone(memory_format=dense)
        self._count()
        if bucket:
            logits, states = self._run_compiled(ids, positions, mask, bucket)
            logits = logits[:, :n] if all_logits else logits[:, n - 1 : n]
            if self._cudagraphs:  # the graph's output buffers are overwritten by its next replay
                logits, states = logits.clone(), states.clone()
        else:
            logits, states = self._step(ids, positions, mask, rows=None if all_logits else n - 1)
        cache.length = past + n
        self.forward_calls += 1
        return ForwardOutput(logits=logits.float(), hidden=states[:, :n] if hidden else None)

    def _step(
        self,
        ids: torch.Tensor,  # [batch, w]
        positions: torch.Tensor,  # [batch, w]
        mask: torch.Tensor,  # [batch, 1, w, capacity] bool
        rows: int | None = None,  # the one row to compute logits for; None = all
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder layers over the new tokens, then the LM head. Returns logits
        [batch, rows, vocab] in the model dtype and the final hidden states [batch, w, hidden]."""
        out = self.decoder(
            input_ids=ids,
            position_ids=positions,
            attention_mask=mask,
            use_cache=True,
            **{self._decoder_cache_kwarg: self.cache},
        )
        states = out.last_hidden_state
        head_in = states if rows is None else states[:, rows : rows + 1]
        logits = self.lm_head(head_in)
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits, states

    def _run_compiled(self, ids, positions, mask, bucket: int):
        if self._compiled is None:  # uncompiled but padded (tests), or compiling gave up
            return self._step(ids, positions, mask)
        key = (ids.shape[0], bucket, self.cache.capacity if self._cudagraphs else 0)
        if key in self._warm:
            return self._compiled(ids, positions, mask)
        start = time.perf_counter()
        try:
            with self.timer.phase("compile"):  # only when `warm_up` missed this width
                out = self._compiled(ids, positions, mask)
                if self._cudagraphs:  # the first calls warm up and record the graph
                    for _ in range(2):
                        out = self._compiled(ids, positions, mask)
        except Exception as e:  # any compiler failure: warn once, run eagerly
            self._give_up(e)
            return self._step(ids, positions, mask)
        self.synchronize()
        self.compile_s += time.perf_counter() - start
        self._warm.add(key)
        return out

    def _give_up(self, error: Exception) -> None:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        self.compile_error = reason
        self._compiled = None
        self._cudagraphs = False
        warnings.warn(
            f"decbench: torch.compile failed for '{self.name}' ({reason}); the static runner "
            "continues eagerly",
            RuntimeWarning,
            stacklevel=3,
        )

    def _bucket(self, n: int) -> int:
        """The padded width for n new tokens, or 0 to run unpadded (no compile, or too many)."""
        if not self._pad:
            return 0
        return next((b for b in BUCKETS if b >= n), 0)

    def _mask(
        self,
        past: int,
        n: int,
        width: int,
        tree_mask: torch.Tensor | None,
        past_mask: torch.Tensor | None = None,  # [batch, past] bool
    ):
        """[batch, 1, width, capacity] bool: every row sees slots [0, past) (in a ragged batch
        only those `past_mask` marks valid); new token i sees new token j when j <= i (or as
        `tree_mask` says); padding rows see causally."""
        cache = self.cache
        batch = cache.batch
        slots = torch.arange(cache.capacity, device=self.device)
        rows = torch.arange(width, device=self.device)
        visible = slots[None, :] < past + rows[:, None] + 1  # causal over prefix and new
        mask = visible.expand(batch, 1, width, cache.capacity)
        mask = mask.contiguous()
        if tree_mask is not None:
            mask[:, 0, :n, past : past + n] = tree_mask.to(self.device, torch.bool)
        if past_mask is not None:
            mask[:, 0, :, :past] &= past_mask.to(self.device, torch.bool)[:, None, :]
        if self._compiled is not None:
            torch._dynamo.maybe_mark_dynamic(mask, 3)
        return mask

    def _grow(self, needed: int) -> None:
        """A request outgrew the capacity: move the valid prefix into a bigger cache."""
        old = self.cache
        length = old.length
        self.cache = None
        self._allocate(old.batch, needed)
        if self.cache.capacity < needed:
            raise RunError(
                f"'{self.name}' needs {needed} cache slots; its context allows "
                f"{self.cache.capacity}"
            )
        self.cache.kv[..., :length, :] = old.kv[..., :length, :]
        self.cache.length = length

    def _count(self) -> None:
        """Fire the model's forward pre-hooks: the forward count of `compare`
        (decbench/measure.py) hooks the model object, which this runner does not call."""
        for hook in list(self.model._forward_pre_hooks.values()):
            hook(self.model, ())

    # -- cache surgery -------------------------------------------------------------------------
    def crop(self, length: int) -> None:
        """Rollback: only the length pointer moves."""
        if self.cache is not None and length < self.cache.length:
            self.cache.length = length

    @torch.inference_mode()
    def compact(self, start: int, keep: torch.Tensor) -> None:
        """Move the accepted rows `start + keep` (sorted) to slots [start, start + len(keep))
        in every layer at once; the valid length becomes start + len(keep)."""
        if self.cache is None:
            return
        kv = self.cache.kv
        keep = keep.to(self.device).long()
        m = keep.numel()
        kv[..., start : start + m, :] = kv.index_select(-2, start + keep)
        self.cache.length = start + m

    @torch.inference_mode()
    def gather_slots(self, index: torch.Tensor) -> None:
        """Ragged compaction: row b keeps slots `index[b]` ([batch, m]) at slots [0, m), every
        layer in one gather; the valid length becomes m."""
        if self.cache is None:
            return
        kv = self.cache.kv  # [2, layers, batch, kv_heads, capacity, dim]
        index = index.to(self.device).long()
        m = index.shape[1]
        two, layers, batch, heads, _, dim = kv.shape
        spread = index[None, None, :, None, :, None].expand(two, layers, batch, heads, m, dim)
        kv[..., :m, :] = kv.gather(4, spread)
        self.cache.length = m

    @torch.inference_mode()
    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows `rows` ([b'], in that order): finished sequences leave."""
        if self.cache is not None:
            self.cache._take(rows.to(self.device).long())

    # -- warm-up -------------------------------------------------------------------------------
    def warm_up(self, length: int = 1, batch: int = 1) -> float:
        """Compile every bucket for `batch` rows and a cache that holds `length` positions
        (outside any timing); returns the seconds it took. A ragged batch shrinks as its rows
        finish, so `compare --batch-size` warms every batch width up to the largest."""
        if self._compiled is None:
            return 0.0
        self._allocate(batch, max(length, 1))
        before = self.compile_s
        for bucket in BUCKETS:
            if self._compiled is None:
                break
            ids = torch.zeros(batch, bucket, dtype=torch.long, device=self.device)
            self.cache.length = 0
            self.forward(ids)
        self.cache.length = 0
        return self.compile_s - before


RUNNERS = ("eager", "static")


def check_runner(name: str) -> None:
    if name not in RUNNERS:
        raise ConfigError(f"backend.runner: '{name}' is not one of {', '.join(RUNNERS)}")


def static_runner(
    runner: ModelRunner, compile: bool, progress: Callable[[str], None] | None = None
) -> StaticRunner:
    """The same loaded model (weights shared, nothing copied) behind a StaticRunner; compiled
    runners compile every bucket here, at load, so that no timed run compiles."""
    static = StaticRunner(
        runner.model, runner.tokenizer, name=runner.name, folder=runner.folder, compile=compile
    )
    if static.compiled:
        if progress:
            progress(f"compiling {runner.name} for {len(BUCKETS)} forward widths ...")
        static.warm_up()
    return static


def runner_facts(runner: ModelRunner) -> dict:
    """What the environment records about the runner: kind, compiled, compile seconds."""
    if not isinstance(runner, StaticRunner):
        return {"runner": "eager"}
    return {
        "runner": "static",
        "compiled": runner.compiled,
        "compile_s": round(runner.compile_s, 2),
        "compile_error": runner.compile_error,
    }

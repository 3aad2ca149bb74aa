"""Ragged batches: B sequences in one forward, each with its own length, positions, rollback and
tree, on any runner that takes a per-row mask over its cached slots (`past_mask`).

The runner's KV cache has one physical length L for all rows. Each row keeps a validity mask
`valid[b, slot]` over those slots and a logical length (its count of valid slots), which is
also the position of its next token, so a row's positions, and thus its RoPE, are those of the
same sequence run alone.

- Prompts of different lengths are left-padded; pad slots are invalid. A pad query row sees
  only itself, so no row of the attention is fully masked (no NaNs).
- A step appends one block of width w (the widest row's pending token + draft, or tree) to every
  row. Row b's tokens see its valid slots and its own block, causally or under its tree mask;
  the columns past its own block width are pad slots, invalid from the start.
- Rollback and tree compaction of one row only clear validity bits (`keep`): attention does not
  care where a key sits, only what its position was, and the cached keys carry their rotary
  position already.
- `trim` crops the slots that no row holds at the end of the cache (the common rejected tail)
  after every step, and gathers each row's valid slots to the left (`gather_slots`) once the
  widest row wastes more than `COMPACT_AT` slots.
- Finished rows leave: `select` index-selects the batch dimension of the cache.

The bookkeeping (`valid`, the padded ids, positions and masks of a step) lives on the host on
purpose: it is built row by row from Python lists, and each runner moves what it is handed to
its own device once per forward (`forward`, `gather_slots`, `select_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.runner import ForwardOutput, ModelRunner
from decbench.errors import RunError

COMPACT_AT = 32  # invalid slots in the fullest row before a physical compaction
PAD_ID = 0  # any id will do: pad tokens are never seen by a real token


@dataclass
class RowBlock:
    """One row's new tokens for a batched forward: the same fields as tree.VerifyBlock, without
    the batch dimension."""

    ids: list[int]  # [n]
    positions: list[int]  # [n] absolute positions
    mask: torch.Tensor  # [n, n] bool: new token i may see new token j


def chain_block(tokens: list[int], start: int) -> RowBlock:
    """A causal block of `tokens` at positions start, start + 1, ..."""
    n = len(tokens)
    return RowBlock(list(tokens), list(range(start, start + n)), causal(n))


def causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


class RaggedBatch:
    """The validity bookkeeping of one ragged batch on `runner` (see the module docstring)."""

    def __init__(self, runner: ModelRunner) -> None:
        if not hasattr(runner, "gather_slots"):
            raise RunError(f"runner '{runner.name}' cannot run ragged batches")
        self.runner = runner
        self.valid = torch.zeros(0, 0, dtype=torch.bool)  # [batch, L] on the host
        self.compactions = 0

    @property
    def batch(self) -> int:
        return self.valid.shape[0]

    @property
    def lengths(self) -> list[int]:
        """[batch] each row's logical length: its valid slots, the position of its next token."""
        return self.valid.sum(1).tolist()

    # -- forwards ----------------------------------------------------------------------------
    def prefill(
        self, prompts: list[list[int]], all_logits: bool = False, hidden: bool = False
    ) -> ForwardOutput:
        """The prompts, left-padded to the longest, into a fresh cache. Logits (and hidden
        states) come back left-padded too: row b's real positions are its last len(prompt)."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), PAD_ID, dtype=torch.long)
        positions = torch.zeros(len(prompts), width, dtype=torch.long)
        self.valid = torch.zeros(len(prompts), width, dtype=torch.bool)
        for b, prompt in enumerate(prompts):
            pad = width - len(prompt)
            ids[b, pad:] = torch.tensor(prompt)
            positions[b, pad:] = torch.arange(len(prompt))
            self.valid[b, pad:] = True
        mask = causal(width) & self.valid[:, None, :]  # real tokens see real tokens
        mask |= torch.eye(width, dtype=torch.bool)  # a pad row sees itself
        return self.runner.prefill(
            ids, all_logits=all_logits, hidden=hidden, positions=positions, tree_mask=mask
        )

    def forward(self, blocks: list[RowBlock], hidden: bool = False) -> ForwardOutput:
        """One forward over every row's block, padded to the widest. Logits [batch, w, vocab]:
        row b's block occupies its first len(blocks[b].ids) columns."""
        if len(blocks) != self.batch:
            raise RunError(f"{len(blocks)} blocks for a batch of {self.batch} rows")
        width = max(len(block.ids) for block in blocks)
        ids = torch.full((self.batch, width), PAD_ID, dtype=torch.long)
        positions = torch.zeros(self.batch, width, dtype=torch.long)
        mask = torch.eye(width, dtype=torch.bool).repeat(self.batch, 1, 1)  # pads see themselves
        fresh = torch.zeros(self.batch, width, dtype=torch.bool)
        for b, block in enumerate(blocks):
            n = len(block.ids)
            ids[b, :n] = torch.tensor(block.ids)
            positions[b, :n] = torch.tensor(block.positions)
            positions[b, n:] = block.positions[-1]
            mask[b, :n, :n] = block.mask
            fresh[b, :n] = True
        out = self.runner.forward(
            ids, positions, mask, all_logits=True, hidden=hidden, past_mask=self.valid
        )
        self.valid = torch.cat([self.valid, fresh], dim=1)
        return out

    # -- rollback ------------------------------------------------------------------------------
    def keep(self, row: int, width: int, kept: list[int]) -> None:
        """Row `row` keeps only the entries `kept` of its last block (its accepted prefix or
        tree path); `width` is the block's padded width."""
        start = self.valid.shape[1] - width
        block = torch.zeros(width, dtype=torch.bool)
        block[kept] = True
        self.valid[row, start:] &= block

    def select(self, rows: list[int]) -> None:
        """Only `rows` stay in the batch, in that order."""
        if rows == list(range(self.batch)):
            return
        index = torch.tensor(rows, dtype=torch.long)
        self.runner.select_rows(index)
        self.valid = self.valid.index_select(0, index)

    def trim(self) -> None:
        """Crop the slots that no row holds at the end; compact when a row wastes too much."""
        used = self.valid.any(0).nonzero()
        end = int(used.max()) + 1 if used.numel() else 0
        if end < self.valid.shape[1]:
            self.runner.crop(end)
            self.valid = self.valid[:, :end]
        longest = int(self.valid.sum(1).max()) if self.batch else 0
        if self.valid.shape[1] - longest > COMPACT_AT:
            self.compact()

    def compact(self) -> None:
        """Gather every row's valid slots to the left, in order; shorter rows pad with invalid
        slots (any index: they are masked)."""
        counts = self.valid.sum(1)
        longest = int(counts.max())
        index = torch.zeros(self.batch, longest, dtype=torch.long)
        valid = torch.zeros(self.batch, longest, dtype=torch.bool)
        for b in range(self.batch):
            slots = self.valid[b].nonzero().squeeze(1)
            index[b, : slots.numel()] = slots
            valid[b, : slots.numel()] = True
        self.runner.gather_slots(index)
        self.valid = valid
        self.compactions += 1

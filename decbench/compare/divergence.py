"""Why a lossless method's output left the baseline's: a near-tie, or a bug?

A verify forward over several tokens sums in another order than a one-token step, so where the
target's two best logits are within float rounding of each other, a lossless method can commit
the other token (transformers #39421, llama.cpp #3006 report the same). A wrong token anywhere
else is a bug. So for every greedy record that diverges from the baseline's record of the same
sample and repeat, `diagnose` re-reads the baseline's target at the first divergence (one
teacher-forced forward over the conversation up to that token, outside any timing) and records:

- `turn`, `position`: where, `token` (the method's) and `baseline_token` there;
- `margin`: the target's top-2 logit margin at that step (best minus second best);
- `gap`: the baseline token's logit minus the method token's (equal to `margin` when the method
  took the runner-up; larger when it took a worse token);
- `near_tie`: `gap < NEAR_TIE`.

The logits come from a fresh forward over the whole prefix, not from the baseline's own
incremental steps, so they agree with what the baseline saw to float rounding (~1e-5 in float32),
far below `NEAR_TIE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from decbench.backends.runner import ModelRunner
from decbench.compare.conversation import encode_turn
from decbench.jsonrecord import OMIT_NONE, JsonRecord
from decbench.profiles import Profile

if TYPE_CHECKING:
    from decbench.compare.harness import SampleRecord

NEAR_TIE = 1e-3  # logits closer than this are a tie up to the rounding of another sum order


@dataclass
class Divergence(JsonRecord):
    """Where a record first left the baseline's record, and whether that was a near-tie."""

    turn: int
    position: int  # within the turn
    index: int  # over all turns
    token: int | None  # the method's token there (None: its turn ended first)
    baseline_token: int | None
    margin: float  # the target's top-2 logit margin at that step
    gap: float | None  # baseline token's logit minus the method token's
    near_tie: bool
    against: str | None = field(default=None, metadata=OMIT_NONE)  # the baseline's label


def first_difference(ids: list[list[int]], base: list[list[int]]) -> tuple[int, int] | None:
    """(turn, position) of the first differing token over the turns (a length mismatch counts at
    the shorter length); None when every turn is identical."""
    for turn, (mine, theirs) in enumerate(zip(ids, base, strict=False)):
        for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            if a != b:
                return turn, i
        if len(mine) != len(theirs):
            return turn, min(len(mine), len(theirs))
    return None


def greedy_record(record: SampleRecord) -> bool:
    return float(record.sampling.get("temperature", 0.0)) <= 0.0


def diagnose(
    record: SampleRecord,
    baseline: SampleRecord,
    target: ModelRunner,
    profile: Profile,
) -> Divergence | None:
    """The divergence of `record` from `baseline` (same sample and repeat), read on the
    baseline's `target` with the baseline's `profile`; None when the tokens are identical or
    either run sampled."""
    if not (greedy_record(record) and greedy_record(baseline)):
        return None
    where = first_difference(record.token_ids, baseline.token_ids)
    if where is None:
        return None
    turn, position = where
    mine, theirs = record.token_ids[turn], baseline.token_ids[turn]
    token = mine[position] if position < len(mine) else None
    base_token = theirs[position] if position < len(theirs) else None
    turns = list(baseline.prompts[: turn + 1])
    prefix = encode_turn(target, profile, turns, list(baseline.turns[:turn]))
    logits = step_logits(target, prefix + theirs[:position])
    top = logits.topk(2).values.tolist()
    gap = None
    if token is not None and base_token is not None:
        gap = float(logits[base_token] - logits[token])
    # a length mismatch (a stop in one run only) has no pair of tokens: judged by the margin
    tie_by = gap if gap is not None else top[0] - top[1]
    return Divergence(
        turn=turn,
        position=position,
        index=sum(len(t) for t in baseline.token_ids[:turn]) + position,
        token=token,
        baseline_token=base_token,
        margin=top[0] - top[1],
        gap=gap,
        near_tie=tie_by < NEAR_TIE,
    )


@torch.inference_mode()
def step_logits(target: ModelRunner, ids: list[int]) -> torch.Tensor:
    """The target's float32 logits [vocab] for the token after `ids` (a fresh cache, dropped
    afterwards so the next timed run starts clean)."""
    try:
        out = target.prefill(torch.tensor([ids]))
        return out.logits[0, -1].float()
    finally:
        target.reset()

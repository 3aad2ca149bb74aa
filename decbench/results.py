"""Results and traces: plain dataclasses with a schema id, serialised straight to JSON.

Vocabulary (used everywhere in decbench):
- a *step* is one target forward pass that commits at least one token;
- *drafted* tokens are what a proposer offered; *accepted* ones survived verification;
- the *bonus* token is the one the target itself contributes each step: resampled from the
  residual after a rejection (*recovered*), or a free extra token when every draft was accepted;
- MAT (mean accepted tokens) = committed tokens / steps, i.e. accepted + 1 per step on average,
  *including* the bonus token. Plain greedy has MAT = 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_GENERATION = "decbench/generation/v1"


@dataclass
class TreeTrace:
    """A candidate tree verified in one step: node i's parent is parents[i] (-1 = root)."""

    tokens: list[int]  # [n_nodes] token of each node
    parents: list[int]  # [n_nodes]
    sources: list[str]  # [n_nodes] which draft source proposed the node
    accepted_path: list[int]  # node indices of the accepted path, root first


@dataclass
class CanvasTrace:
    """One denoiser forward of a masked-diffusion decoder (decbench/diffusion): which canvas
    positions it unmasked. Positions count from the first generated position."""

    positions: list[int]  # [n_unmasked] canvas positions unmasked this step
    tokens: list[int]  # [n_unmasked] the tokens placed there
    block: int  # index of the semi-autoregressive block being decoded
    batch: int = 1  # sequences in this step's forward (FreeDave verifies several drafts at once)
    reference_steps: int = 1  # reference (dllm-confidence) steps this forward reproduced


@dataclass
class StepTrace:
    drafted: list[int]  # [k] draft tokens offered (for trees: the best path's candidates)
    draft_probs: list[float] | None  # [k] draft probability of each drafted token, if known
    accepted: int  # how many drafted tokens were accepted
    bonus: int  # the token from the target this step (recovered or bonus)
    recovered: bool  # the bonus was resampled after a rejection
    emitted: int  # tokens committed this step (accepted + 1, less any cut at a stop)
    times: dict[str, float] = field(default_factory=dict)  # seconds per phase in this step
    tree: TreeTrace | None = None
    canvas: CanvasTrace | None = None  # masked-diffusion decoders only


@dataclass
class Timings:
    total_s: float  # wall time from prefill start to the last token
    ttft_s: float  # time to the first generated token
    prefill_s: float
    tokenize_s: float
    phases: dict[str, float]  # seconds per phase (prefill, draft, verify, accept, ...)
    tokens_per_s: float  # generated tokens / total_s


@dataclass
class GenerationResult:
    method: str
    params: dict[str, Any]  # the method's options as run
    model: str
    prompt: str
    prompt_tokens: int
    token_ids: list[int]  # generated ids only
    text: str
    finish_reason: str  # eos | length | stop | constraint (complete, nothing may follow)
    timings: Timings
    stats: dict[str, Any]  # acceptance statistics (metrics/acceptance.py)
    steps: list[StepTrace]
    sampling: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)  # text quality (metrics/quality.py)
    constraint: dict[str, Any] = field(default_factory=dict)  # metrics/constraint.py; {} if none
    schema: str = SCHEMA_GENERATION

    def to_dict(self, steps: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not steps:
            data.pop("steps")
        return {"schema": data.pop("schema"), **data}

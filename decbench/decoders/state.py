"""GenerationState: the committed tokens, stop rules and trace that every decoder shares.

Stop rules live here once, so that plain and speculative decoding stop at exactly the same token
(EOS, max_new_tokens, a stop string, the context window, a complete constraint), even when
several tokens are committed in one step.

So does the constraint (decbench/constraints): the state advances it with every committed token
and hands decoders the masks of the positions they are about to choose (`allowed`,
`allowed_along`), timed as the "constraint" phase.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict

import torch

from decbench.backends.runner import ModelRunner
from decbench.constraints.base import ConstraintState
from decbench.decoders.base import Request
from decbench.errors import RunError
from decbench.metrics import constraint as constraint_metrics
from decbench.metrics.acceptance import AcceptanceStats
from decbench.results import GenerationResult, StepTrace, Timings, TreeTrace

STOP_WINDOW = 32  # tokens of tail decoded to look for stop strings


class GenerationState:
    def __init__(self, method: str, params: object, target: ModelRunner, request: Request) -> None:
        self.method = method
        self.params = params
        self.target = target
        self.request = request
        self.tokens: list[int] = list(request.prompt_ids)  # prompt + committed
        self.prompt_len = len(request.prompt_ids)
        self.generated: list[int] = []
        self.finish_reason: str | None = None
        self.steps: list[StepTrace] = []
        self.stats = AcceptanceStats.new()
        self.eos = set(target.eos_token_ids)
        self.stops = list(request.generation.stop)
        room = target.max_context - self.prompt_len
        self.max_new = max(0, min(request.generation.max_new_tokens, room))
        reserve = getattr(target, "reserve", None)  # runners with a pre-allocated cache
        if reserve is not None:  # (the diffusion runner has none)
            reserve(self.prompt_len + self.max_new)
        self.timer = target.timer
        self.timer.reset()
        self._mark = self.timer.snapshot()
        self.t0 = time.perf_counter()
        self.first_token_at: float | None = None
        self.constraint: ConstraintState | None = None
        self.constraint_stats = constraint_metrics.ConstraintStats.new()
        if request.constraint is not None:
            self.constraint = request.constraint.start()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def remaining(self) -> int:
        return self.max_new - len(self.generated)

    def commit(self, proposed: list[int]) -> int:
        """Append tokens in order until a stop rule fires; return how many were committed."""
        taken = 0
        for token in proposed:
            if self.done:
                break
            if self.constraint is not None:
                with self.timer.phase("constraint"):
                    self.constraint.advance(token)
            self.tokens.append(token)
            self.generated.append(token)
            taken += 1
            self.finish_reason = self._stop_reason(token)
        if taken and self.first_token_at is None:
            self.target.synchronize()
            self.first_token_at = time.perf_counter()
        if taken and self.request.on_tokens is not None:
            self.request.on_tokens(self.generated[-taken:])
        return taken

    def _stop_reason(self, token: int) -> str | None:
        if token in self.eos:
            return "eos"
        if self.stops and self.target.tokenizer is not None:
            tail = self.target.tokenizer.decode(self.generated[-STOP_WINDOW:])
            if any(stop in tail for stop in self.stops):
                return "stop"
        if len(self.generated) >= self.max_new:
            return "length"
        if self.constraint is not None and self.constraint.must_stop:
            return "constraint"
        return None

    # -- the constraint ----------------------------------------------------------------------
    def allowed(self) -> torch.Tensor | None:
        """[1, vocab] bool: the tokens the constraint allows next (None: unconstrained)."""
        if self.constraint is None:
            return None
        with self.timer.phase("constraint"):
            mask = self.constraint.mask()[None]
        return self.check_masks(mask)

    def allowed_along(self, draft_tokens: Sequence[int]) -> torch.Tensor | None:
        """[k+1, vocab] bool: the masks after the committed tokens and after each prefix of a
        draft that the constraint allows (see `prune`)."""
        if self.constraint is None:
            return None
        with self.timer.phase("constraint"):
            masks = self.constraint.masks_along(draft_tokens)
        return self.check_masks(masks)

    def prune(self, draft_tokens: Sequence[int]) -> int:
        """How many leading draft tokens the constraint allows (all when unconstrained)."""
        if self.constraint is None:
            return len(draft_tokens)
        with self.timer.phase("constraint"):
            kept = self.constraint.allowed_prefix(draft_tokens)
        self.constraint_stats.observe_draft(len(draft_tokens), kept)
        return kept

    def check_masks(self, masks: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """Count `rows` computed mask rows (default: all of `masks`) and refuse a dead end: a
        row that allows nothing means the constraint cannot be completed from here."""
        self.constraint_stats.observe_masks(masks.shape[0] if rows is None else rows)
        if not bool(masks.any(-1).all()):
            raise RunError(
                f"the constraint allows no token after {len(self.generated)} generated tokens "
                f"({self.request.constraint.describe()}); it cannot be completed"
            )
        return masks

    def record(
        self,
        drafted: list[int],
        draft_probs: list[float] | None,
        accepted: int,
        bonus: int,
        recovered: bool,
        emitted: int,
        tree: TreeTrace | None = None,
    ) -> None:
        """Add one step to the trace, with the phase times spent since the previous step."""
        now = self.timer.snapshot()
        times = {k: v - self._mark.get(k, 0.0) for k, v in now.items() if v != self._mark.get(k)}
        self._mark = now
        step = StepTrace(drafted, draft_probs, accepted, bonus, recovered, emitted, times, tree)
        self.steps.append(step)
        self.stats.observe_step(step)

    def result(self) -> GenerationResult:
        if self.finish_reason is None:
            self.finish_reason = "length"
        self.target.synchronize()
        total = time.perf_counter() - self.t0
        phases = self.timer.snapshot()
        tokenizer = self.target.tokenizer
        text = tokenizer.decode(self.generated, skip_special_tokens=True) if tokenizer else ""
        timings = Timings(
            total_s=total,
            ttft_s=(self.first_token_at or time.perf_counter()) - self.t0,
            prefill_s=phases.get("prefill", 0.0),
            tokenize_s=self.request.tokenize_s,
            phases=phases,
            tokens_per_s=len(self.generated) / total if total > 0 else 0.0,
        )
        return GenerationResult(
            method=self.method,
            params=asdict(self.params),
            model=self.target.name,
            prompt=self.request.prompt,
            prompt_tokens=self.prompt_len,
            token_ids=list(self.generated),
            text=text,
            finish_reason=self.finish_reason,
            timings=timings,
            stats=self.stats.summary(),
            steps=self.steps,
            sampling=asdict(self.request.sampling),
            generation=asdict(self.request.generation),
            constraint=self._constraint_summary(text, total, phases),
        )

    def _constraint_summary(self, text: str, total_s: float, phases: dict) -> dict:
        constraint = self.request.constraint
        if constraint is None:
            return {}
        return constraint_metrics.summarize(
            self.constraint_stats,
            constraint.kind,
            constraint.source,
            constraint.satisfied(self.generated, text),
            phases.get("constraint", 0.0),
            total_s,
            len(self.steps),
        )

"""GenerationState: the committed tokens, stop rules and trace that every decoder shares.

Stop rules live here once, so that plain and speculative decoding stop at exactly the same token
(EOS, max_new_tokens, a stop string, the context window), even when several tokens are committed
in one step.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Request
from decbench.metrics.acceptance import AcceptanceStats, summarize
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
        return None

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
            stats=summarize(self.stats),
            steps=self.steps,
            sampling=asdict(self.request.sampling),
            generation=asdict(self.request.generation),
        )

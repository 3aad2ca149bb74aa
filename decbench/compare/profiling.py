"""`decbench profile` as a library: where the time goes, what verification costs, how
acceptance decays along the draft, and what speedup theory predicts from those numbers.

The prediction follows Leviathan et al., "Fast Inference from Transformers via Speculative
Decoding" (2023): with a per-token acceptance probability alpha (assumed i.i.d.) and k draft
tokens per step, a step commits E = (1 - alpha^(k+1)) / (1 - alpha) tokens on average, and with
c = cost of one draft token / cost of one target forward, the speedup is E / (k c + 1).

Generalised to what decbench measures:
- alpha is estimated from the trace by maximum likelihood for that geometric model:
  accepted / (accepted + steps with a rejection);
- steps without a draft (prompt lookup finding no match) commit one token, so
  E_mix = f E + (1 - f) with f the share of steps that drafted;
- c = draft seconds per drafted token / T(1), where T(n) is the measured time of one target
  forward over n new tokens on a prefilled cache. This also covers proposers without a draft
  model (prompt lookup: c is close to 0). Leviathan's formula assumes T(k + 1) = T(1);
- the verify-aware prediction drops that assumption: E_mix T(1) / (draft s per step + T(v)),
  with v the mean number of tokens the target verified per step (tree nodes for trees).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decbench.backends.runner import ModelRunner
from decbench.backends.timing import PhaseTimer
from decbench.compare.harness import Contender, SampleRecord, generate_turn
from decbench.compare.stats import ExactMatch, Spread, merged_stats
from decbench.compare.summary import CompareSummary
from decbench.errors import ConfigError, RunError
from decbench.jsonrecord import ABSENT, OMIT_NONE, JsonRecord
from decbench.measure import forward_seconds
from decbench.metrics.acceptance import AcceptanceStats, PositionRate
from decbench.profiles import TABLES, Profile, build
from decbench.suites import SuiteInfo

SCHEMA_PROFILE = "decbench/profile/v1"


# -- the report (decbench/profile/v1) ------------------------------------------------------------
@dataclass
class VerifyPoint(JsonRecord):
    """One point of the verify-cost curve: a target forward over `tokens` new tokens."""

    tokens: int
    median_ms: float
    min_ms: float
    max_ms: float
    relative: float  # median over the median at one token


@dataclass
class PhaseShare(JsonRecord):
    seconds: float
    share: float  # of the wall time plus tokenisation
    ms_per_token: float


@dataclass(kw_only=True)
class Prediction(JsonRecord):
    """The analytic speedups of the module docstring, and what was measured."""

    drafts: bool  # False: the method drafted nothing, and the model predicts 1.0
    alpha: float | None = field(default=None, metadata=OMIT_NONE)
    k: float | None = field(default=None, metadata=OMIT_NONE)
    drafting_share: float | None = field(default=None, metadata=OMIT_NONE)
    c: float | None = field(default=None, metadata=OMIT_NONE)
    t1_ms: float | None = field(default=None, metadata=OMIT_NONE)
    mean_verified_tokens: float | None = field(default=None, metadata=OMIT_NONE)
    expected_tokens_per_step: float
    leviathan_speedup: float
    verify_aware_speedup: float | None = field(default=None, metadata=OMIT_NONE)
    measured_tokens_per_step: float | None = None  # MAT
    measured_speedup: Spread | None = None
    measured_speedup_total: float | None = None


@dataclass(kw_only=True)
class ProfileReport(JsonRecord):
    schema: str = SCHEMA_PROFILE
    profile: str  # the label of the profiled profile
    method: str
    baseline: str
    suite: SuiteInfo
    runs: int
    tokens: int
    wall_time_s: float
    tokens_per_s: Spread | None
    baseline_tokens_per_s: Spread | None
    exact_match: ExactMatch | None
    phases: dict[str, PhaseShare]  # largest first, `other` included
    verify_cost: list[VerifyPoint]
    proposer: dict[str, Any] | None  # the proposer's own report (eagle2's tree-size choice)
    position_acceptance: list[PositionRate]
    prediction: Prediction
    trace: str | None  # the Chrome trace written with --trace
    environment: dict[str, Any]


def baseline_profile(profile: Profile) -> Profile:
    """The same model, backend, generation and sampling with plain one-token decoding: greedy,
    or ancestral sampling for a sampling profile."""
    data = profile.to_dict()
    raw = {key: data[key] for key in TABLES}
    raw["method"] = {"name": "greedy" if profile.sampling.greedy else "sample"}
    return build(raw, f"{profile.label} baseline")


# -- the analytic model --------------------------------------------------------------------------
def expected_tokens_per_step(alpha: float, k: float) -> float:
    """Leviathan et al. (2023), eq. 1: E = (1 - alpha^(k+1)) / (1 - alpha); k + 1 at alpha = 1."""
    if alpha >= 1.0:
        return k + 1.0
    return (1.0 - alpha ** (k + 1.0)) / (1.0 - alpha)


def leviathan_speedup(alpha: float, k: float, c: float) -> float:
    """Expected walltime improvement E / (k c + 1) (Leviathan et al. 2023, Theorem 3.8)."""
    return expected_tokens_per_step(alpha, k) / (k * c + 1.0)


def interpolate(curve: list[VerifyPoint], tokens: float) -> float:
    """T(tokens) in seconds from the verify-cost curve; linear, extrapolated past its end."""
    xs = np.array([point.tokens for point in curve], dtype=float)
    ys = np.array([point.median_ms for point in curve], dtype=float) / 1000
    if tokens <= xs[-1] or len(xs) < 2:
        return float(np.interp(tokens, xs, ys))
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return float(ys[-1] + slope * (tokens - xs[-1]))


def predict(stats: AcceptanceStats, draft_s: float, curve: list[VerifyPoint]) -> Prediction:
    """The analytic speedups from summed trace statistics (see the module docstring)."""
    steps, drafted, accepted = stats.steps, stats.drafted, stats.accepted
    trials = accepted + stats.rejected_steps
    t1 = interpolate(curve, 1)
    if not steps or not drafted or not trials or t1 <= 0:
        return Prediction(drafts=False, expected_tokens_per_step=1.0, leviathan_speedup=1.0)
    alpha = accepted / trials
    k = drafted / stats.drafted_steps
    share = stats.drafted_steps / steps
    c = (draft_s / drafted) / t1
    e_mix = share * expected_tokens_per_step(alpha, k) + (1.0 - share)
    verified = stats.verified_tokens / steps
    return Prediction(
        drafts=True,
        alpha=alpha,
        k=k,
        drafting_share=share,
        c=c,
        t1_ms=t1 * 1000,
        mean_verified_tokens=verified,
        expected_tokens_per_step=e_mix,
        leviathan_speedup=e_mix / (share * k * c + 1.0),
        verify_aware_speedup=e_mix * t1 / (draft_s / steps + interpolate(curve, verified)),
    )


# -- measurements --------------------------------------------------------------------------------
@torch.inference_mode()
def verify_cost_curve(
    target: ModelRunner, prompt_ids: list[int], max_tokens: int = 16, repeats: int = 5
) -> list[VerifyPoint]:
    """Time of one target forward over n = 1..max_tokens new tokens on top of the prefilled
    prompt, as the verify step runs it (all logits). Median of `repeats`, n interleaved."""
    if max_tokens < 1 or repeats < 1:
        raise ConfigError("--verify-max and --verify-repeats must be >= 1")
    seconds = forward_seconds(target, prompt_ids, list(range(1, max_tokens + 1)), repeats)
    one = float(np.median(seconds[1]))
    return [
        VerifyPoint(
            tokens=n,
            median_ms=float(np.median(s)) * 1000,
            min_ms=min(s) * 1000,
            max_ms=max(s) * 1000,
            relative=float(np.median(s)) / one if one > 0 else 0.0,
        )
        for n, s in seconds.items()
    ]


def summed_phases(records: list[SampleRecord]) -> dict[str, float]:
    phases: dict[str, float] = {}
    for record in records:
        for name, seconds in record.phases.items():
            phases[name] = phases.get(name, 0.0) + seconds
    return phases


def phase_breakdown(records: list[SampleRecord]) -> dict[str, PhaseShare]:
    """Seconds per phase over the records, plus `other` = wall time not inside any phase (the
    decoder's own Python, cache bookkeeping, stop checks). Tokenisation happens before the clock
    starts; it is listed but is not part of the wall time."""
    phases = summed_phases(records)
    wall = sum(sum(r.wall_time) for r in records)
    tokens = sum(sum(r.new_tokens) for r in records)
    inside = sum(s for name, s in phases.items() if name != "tokenize")
    phases["other"] = max(0.0, wall - inside)
    total = wall + phases.get("tokenize", 0.0)
    ordered = sorted(phases.items(), key=lambda kv: -kv[1])
    return {
        name: PhaseShare(
            seconds=seconds,
            share=seconds / total if total > 0 else 0.0,
            ms_per_token=1000 * seconds / tokens if tokens else 0.0,
        )
        for name, seconds in ordered
    }


def report(
    label: str,
    summary: CompareSummary,
    records: list[SampleRecord],
    curve: list[VerifyPoint],
    trace: Path | None,
) -> ProfileReport:
    """The decbench/profile/v1 document for profile `label` of a two-profile compare summary."""
    own = [r for r in records if r.profile == label]
    if not own:
        raise RunError(f"profile '{label}' recorded no runs")
    stats = merged_stats(own)
    metrics = summary.overall(label)
    base = summary.overall(summary.baseline)
    prediction = predict(stats, summed_phases(own).get("draft", 0.0), curve)
    prediction.measured_tokens_per_step = metrics.mat
    prediction.measured_speedup = metrics.speedup
    prediction.measured_speedup_total = metrics.speedup_total
    return ProfileReport(
        profile=label,
        method=own[0].method,
        baseline=summary.baseline,
        suite=summary.suite,
        runs=len(own),
        tokens=metrics.tokens,
        wall_time_s=metrics.wall_time_s,
        tokens_per_s=metrics.tokens_per_s,
        baseline_tokens_per_s=base.tokens_per_s,
        exact_match=metrics.exact_match,
        phases=phase_breakdown(own),
        verify_cost=curve,
        proposer=None if own[-1].proposer is ABSENT else own[-1].proposer,
        position_acceptance=stats.position_table(),
        prediction=prediction,
        trace=str(trace) if trace else None,
        environment=summary.environment,
    )


# -- torch profiler trace ------------------------------------------------------------------------
class TracingTimer(PhaseTimer):
    """A PhaseTimer whose phases also appear as named ranges in a torch profiler trace."""

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with torch.profiler.record_function(f"decbench.{name}"), super().phase(name):
            yield


@contextlib.contextmanager
def traced_phases(runner: ModelRunner) -> Iterator[None]:
    saved = runner.timer
    runner.timer = TracingTimer(runner.device)
    try:
        yield
    finally:
        runner.timer = saved


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """The profiler's native library logs start/stop lines straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def export_trace(contender: Contender, prompt: str, path: Path) -> Path:
    """One generation of `prompt` under torch.profiler, written as a Chrome trace (open it in
    chrome://tracing or https://ui.perfetto.dev)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if contender.session.target.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--trace: cannot create {path.parent}: {e.strerror}") from e
    target = contender.session.target
    with _quiet_native_stderr(), traced_phases(target), profile(activities=activities) as prof:
        generate_turn(contender, [prompt], [])
    try:
        prof.export_chrome_trace(str(path))
    except OSError as e:
        raise RunError(f"--trace: cannot write {path}: {e.strerror}") from e
    return path

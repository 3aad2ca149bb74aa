"""`compare --batch-size 1,2,4,8`: up to which concurrency does speculation still pay?

For each batch size B the suite's prompts (each sample's first turn) are cut into groups of B
in suite order, the same groups for every method (the last group may be shorter). Groups run
with the methods interleaved (A B A B ...), each group as one ragged batch
(`Decoder.generate_batch`); at B = 1 a group is one plain `generate`, decbench's batch-1 path,
so the curve starts at the numbers `compare` reports without `--batch-size`.

Per method and B:
- throughput: all tokens generated in the groups / the groups' summed wall time (device
  synchronised around each group), and its median over groups;
- per-request latency: a request's own start (its batch's start) to its own finish, median and
  max (finished rows leave the batch, so a short answer is not held back by long ones);
- speedup: the method's throughput over the baseline's on the same group (same B, same
  prompts), median and range over groups, plus the ratio of the total throughputs;
- exactness: each output against the same method's batch-1 output of that prompt (the B = 1
  run, or an untimed `generate` when 1 is not among the sizes), and against the baseline at the
  same B. Under greedy a difference gets the first divergence index and the target's logit
  margin there (as compare/divergence.py does for single runs): a near-tie (margin below
  NEAR_TIE) is float summation order over a different number of masked slots, anything else a
  bug.

`crossover` is where a method's median speedup first falls below 1.0, with a log2-linear
estimate of the crossing between the two batch sizes around it. Results carry the schema
decbench/batch-compare/v1 (docs/compare.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from decbench.compare.conversation import encode_turn
from decbench.compare.divergence import NEAR_TIE, step_logits
from decbench.compare.harness import Contender, open_contenders
from decbench.compare.plan import Plan, plan_profiles
from decbench.compare.stats import Spread, spread
from decbench.constraints.build import SAMPLE
from decbench.decoders.base import Request
from decbench.decoders.batch import check_batches
from decbench.decoders.registry import get_decoder
from decbench.environment import environment
from decbench.errors import ConfigError
from decbench.jsonrecord import JsonRecord
from decbench.measure import WARMUP_TOKENS, measure_batch
from decbench.results import GenerationResult
from decbench.suites import SuiteInfo

SCHEMA_BATCH = "decbench/batch-compare/v1"
MAX_BATCH = 256


# -- the summary (docs/compare.md, "Summary schema decbench/batch-compare/v1") -------------------
@dataclass
class BatchDivergence(JsonRecord):
    """Where a batched output first left the same method's batch-1 output, read on the target."""

    sample_id: str
    position: int
    token: int | None  # the batched output's token (None: it ended first)
    batch1_token: int | None
    margin: float  # the target's top-2 logit margin there
    gap: float | None  # batch-1 token's logit minus the batched token's
    near_tie: bool


@dataclass
class GroupRun(JsonRecord):
    """One group of prompts run as one batch by one method, in one repeat."""

    label: str
    batch_size: int
    group: int
    repeat: int
    samples: list[int]  # [rows] indices into the summary's samples
    wall_s: float
    tokens: int
    tokens_per_s: float
    latency_s: list[float]  # [rows] batch start to the row's own finish
    token_ids: list[list[int]]  # [rows][tokens]
    steps: int  # target steps over the rows (each row's trace; prefill included)
    mat: float | None  # tokens per target step, bonus included
    finish_reasons: list[str]  # [rows]
    identical_to_batch1: list[bool] = field(default_factory=list)  # [rows], by check_exactness
    identical_to_baseline: list[bool] = field(default_factory=list)  # [rows]
    divergences: list[BatchDivergence] = field(default_factory=list)


@dataclass
class BatchPoint(JsonRecord):
    """One method at one batch size."""

    groups: int
    requests: int
    tokens: int
    wall_s: float
    tokens_per_s: float  # all tokens over the groups' summed wall time
    group_tokens_per_s: Spread | None
    latency_s: Spread | None
    speedup: Spread | None  # over groups, against the baseline; None for the baseline
    total_speedup: float | None
    mat: float | None
    identical_to_batch1: float | None  # share of outputs
    identical_to_baseline: float | None
    divergences: list[BatchDivergence]


@dataclass
class Crossover(JsonRecord):
    """Where a method's median speedup is at least 1.0; see `crossover`."""

    pays_at: list[int]
    below_1_at: int | None
    pays_up_to: int | None
    estimate: float | None  # log2-linear estimate of the B where the curve crosses 1.0


@dataclass
class BatchProfile(JsonRecord):
    label: str
    method: str
    params: dict[str, Any]  # the method's options


@dataclass(kw_only=True)
class BatchSummary(JsonRecord):
    schema: str = SCHEMA_BATCH
    suite: SuiteInfo
    samples: list[str]  # sample ids, in group order
    baseline: str
    batch_sizes: list[int]
    repeat: int
    warmup: int
    profiles: list[BatchProfile]
    environment: dict[str, Any]
    results: dict[str, dict[int, BatchPoint]]  # label -> batch size -> (a string key in JSON)
    crossover: dict[str, Crossover]  # every label but the baseline
    runs: list[GroupRun]


def parse_batch_sizes(text: str) -> list[int]:
    """'1,2,4,8' -> [1, 2, 4, 8] (sorted, without repeats); one clear error otherwise."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= MAX_BATCH:
            raise ConfigError(
                f"--batch-size: '{part}' is not a batch size; give integers 1..{MAX_BATCH} "
                "separated by commas, e.g. --batch-size 1,2,4,8"
            )
        sizes.append(int(part))
    return sorted(set(sizes))


def check_batch_plan(plan: Plan) -> None:
    """Refuse, before loading anything, a profile whose method does not batch or whose
    constraint comes from each sample (a batch shares one constraint setting)."""
    labels, profiles = plan_profiles(plan)
    for label, profile in zip(labels, profiles, strict=True):
        check_batches(get_decoder(profile.method), backend=profile.backend.name)
        if profile.constraint.schema == SAMPLE:
            raise ConfigError(
                f"profile '{label}': constraint.schema = \"sample\" is per sample; --batch-size "
                "runs with one constraint for every row"
            )


def run_batch_compare(
    plan: Plan,
    sizes: list[int],
    progress: Callable[[str], None] = lambda _m: None,
    contenders: list[Contender] | None = None,
) -> BatchSummary:
    """Measure every profile of `plan` at every batch size; returns the batch-compare summary."""
    check_batch_plan(plan)
    labels, profiles = plan_profiles(plan)
    baseline = plan.baseline
    contenders = contenders or open_contenders(labels, profiles, progress)
    for contender in contenders:
        check_batches(type(contender.session.decoder), contender.session.target)
    warm_batch_widths(contenders, max(sizes), progress)
    samples = plan.samples
    prompts = {
        c.label: [encode_turn(c.session.target, c.profile, [s.turns[0]], []) for s in samples]
        for c in contenders
    }
    if any(len(s.turns) > 1 for s in samples):
        progress("--batch-size runs each sample's first turn")
    runs: list[GroupRun] = []
    for size in sizes:
        groups = [list(range(i, min(i + size, len(samples)))) for i in range(0, len(samples), size)]
        for contender in contenders:
            for _ in range(plan.warmup):
                run_group(contender, prompts[contender.label][:size], WARMUP_TOKENS)
        for repeat in range(plan.repeat):
            for g, group in enumerate(groups):
                for contender in contenders:
                    ids = [prompts[contender.label][i] for i in group]
                    results, wall = run_group(contender, ids)
                    runs.append(
                        group_record(contender.label, size, g, repeat, group, results, wall)
                    )
                    progress(
                        f"B={size} group {g + 1}/{len(groups)} {contender.label}: "
                        f"{runs[-1].tokens} tokens, {runs[-1].tokens_per_s:.1f} tok/s"
                    )
    single = batch_one_outputs(contenders, prompts, runs, progress)
    check_exactness(runs, single, contenders, prompts, baseline, samples)
    base = profiles[labels.index(baseline)]
    return BatchSummary(
        suite=plan.suite.info(),
        samples=[s.id for s in samples],
        baseline=baseline,
        batch_sizes=sizes,
        repeat=plan.repeat,
        warmup=plan.warmup,
        profiles=[
            BatchProfile(label, p.method, dataclasses.asdict(p.options))
            for label, p in zip(labels, profiles, strict=True)
        ],
        environment={
            **environment(
                base.backend.device,
                base.backend.dtype,
                model=base.model.name,
                seed=base.sampling.seed,
            ),
            **contenders[0].environment,
        },
        results={label: summarize_label(runs, label, baseline, sizes) for label in labels},
        crossover={
            label: crossover(runs, label, baseline, sizes) for label in labels if label != baseline
        },
        runs=runs,
    )


def warm_batch_widths(
    contenders: list[Contender], largest: int, progress: Callable[[str], None]
) -> None:
    """A compiled static runner compiles per batch width: warm every width a shrinking batch
    can pass through (1..largest) before any timing."""
    warmed: set[int] = set()
    for contender in contenders:
        target = contender.session.target
        if id(target) in warmed or not getattr(target, "compiled", False):
            continue
        warmed.add(id(target))
        progress(f"compiling {target.name} for batch widths 1..{largest} ...")
        for batch in range(2, largest + 1):  # width 1 was compiled at load
            target.warm_up(batch=batch)


def run_group(
    contender: Contender, prompt_ids: list[list[int]], max_new: int | None = None
) -> tuple[list[GenerationResult], float]:
    """One group as one batch (B = 1: a plain generate), measured by decbench/measure.py."""
    session, profile = contender.session, contender.profile
    generation = profile.generation
    if max_new is not None:
        generation = dataclasses.replace(
            generation, max_new_tokens=min(max_new, generation.max_new_tokens)
        )
    requests = [
        Request("", ids, generation, profile.sampling, constraint=session.constraint)
        for ids in prompt_ids
    ]
    measured = measure_batch(session, requests)  # decbench/measure.py
    return measured.results, measured.wall_s


def group_record(
    label: str,
    size: int,
    group: int,
    repeat: int,
    members: list[int],
    results: list[GenerationResult],
    wall: float,
) -> GroupRun:
    tokens = sum(len(r.token_ids) for r in results)
    steps = sum(len(r.steps) for r in results)
    return GroupRun(
        label=label,
        batch_size=size,
        group=group,
        repeat=repeat,
        samples=members,
        wall_s=wall,
        tokens=tokens,
        tokens_per_s=tokens / wall if wall > 0 else 0.0,
        latency_s=[r.timings.total_s for r in results],
        token_ids=[r.token_ids for r in results],
        steps=steps,
        mat=tokens / steps if steps else None,
        finish_reasons=[r.finish_reason for r in results],
    )


# -- exactness -------------------------------------------------------------------------------
def batch_one_outputs(
    contenders: list[Contender],
    prompts: dict[str, list[list[int]]],
    runs: list[GroupRun],
    progress: Callable[[str], None],
) -> dict[str, list[list[int]]]:
    """Each method's batch-1 tokens per sample: from its B = 1 runs, else one untimed generate."""
    out: dict[str, list[list[int]]] = {}
    for contender in contenders:
        label = contender.label
        ones = [r for r in runs if r.label == label and r.batch_size == 1 and r.repeat == 0]
        if ones:
            by_sample = {r.samples[0]: r.token_ids[0] for r in ones}
            out[label] = [by_sample[i] for i in range(len(prompts[label]))]
            continue
        progress(f"{label}: batch-1 reference runs (untimed)")
        out[label] = [run_group(contender, [ids])[0][0].token_ids for ids in prompts[label]]
    return out


def check_exactness(
    runs: list[GroupRun],
    single: dict[str, list[list[int]]],
    contenders: list[Contender],
    prompts: dict[str, list[list[int]]],
    baseline: str,
    samples: list,
) -> None:
    """Mark every run's outputs against its own batch 1 and the baseline at the same batch size
    (same group, same repeat); diagnose the first divergence from batch 1 under greedy."""
    by_label = {c.label: c for c in contenders}
    base_runs = {(r.batch_size, r.group, r.repeat): r for r in runs if r.label == baseline}
    for run in runs:
        contender = by_label[run.label]
        greedy = contender.profile.sampling.greedy
        run.identical_to_batch1, run.identical_to_baseline, run.divergences = [], [], []
        base = base_runs.get((run.batch_size, run.group, run.repeat))
        for k, (sample, ids) in enumerate(zip(run.samples, run.token_ids, strict=True)):
            reference = single[run.label][sample]
            same = ids == reference
            run.identical_to_batch1.append(same)
            run.identical_to_baseline.append(base is not None and base.token_ids[k] == ids)
            if not same and greedy:
                prompt = prompts[run.label][sample]
                found = divergence(contender, samples[sample].id, prompt, ids, reference)
                run.divergences.append(found)


def divergence(
    contender: Contender, sample_id: str, prompt: list[int], ids: list[int], reference: list[int]
) -> BatchDivergence:
    """The first index where `ids` leaves the batch-1 `reference`, the target's top-2 logit
    margin there, and whether that is a near-tie (read by one untimed forward)."""
    position = next(
        (i for i, (a, b) in enumerate(zip(ids, reference, strict=False)) if a != b),
        min(len(ids), len(reference)),
    )
    logits = step_logits(contender.session.target, prompt + reference[:position])
    top = logits.topk(2).values.tolist()
    token = ids[position] if position < len(ids) else None
    ref_token = reference[position] if position < len(reference) else None
    gap = None
    if token is not None and ref_token is not None:
        gap = float(logits[ref_token] - logits[token])
    margin = top[0] - top[1]
    return BatchDivergence(
        sample_id=sample_id,
        position=position,
        token=token,
        batch1_token=ref_token,
        margin=margin,
        gap=gap,
        near_tie=(gap if gap is not None else margin) < NEAR_TIE,
    )


# -- summary ---------------------------------------------------------------------------------
def summarize_label(
    runs: list[GroupRun], label: str, baseline: str, sizes: list[int]
) -> dict[int, BatchPoint]:
    """Per batch size: throughput, latency, speedup against the baseline, exactness."""
    return {size: batch_point(runs, label, baseline, size) for size in sizes}


def batch_point(runs: list[GroupRun], label: str, baseline: str, size: int) -> BatchPoint:
    mine = [r for r in runs if r.label == label and r.batch_size == size]
    base = {(r.group, r.repeat): r for r in runs if r.label == baseline and r.batch_size == size}
    tokens = sum(r.tokens for r in mine)
    wall = sum(r.wall_s for r in mine)
    base_tokens = sum(r.tokens for r in base.values())
    base_wall = sum(r.wall_s for r in base.values())
    ratios = [
        r.tokens_per_s / b.tokens_per_s
        for r in mine
        if (b := base.get((r.group, r.repeat))) and b.tokens_per_s > 0
    ]
    flags = [x for r in mine for x in r.identical_to_batch1]
    with_base = [x for r in mine for x in r.identical_to_baseline]
    throughput = tokens / wall if wall > 0 else 0.0
    base_throughput = base_tokens / base_wall if base_wall > 0 else 0.0
    steps = sum(r.steps for r in mine)
    is_base = label == baseline
    return BatchPoint(
        groups=len(mine),
        requests=len(flags),
        tokens=tokens,
        wall_s=wall,
        tokens_per_s=throughput,
        group_tokens_per_s=spread([r.tokens_per_s for r in mine]),
        latency_s=spread([x for r in mine for x in r.latency_s]),
        speedup=None if is_base else spread(ratios),
        total_speedup=None if is_base or base_throughput == 0 else throughput / base_throughput,
        mat=tokens / steps if steps else None,  # over every row of every group
        identical_to_batch1=sum(flags) / len(flags) if flags else None,
        identical_to_baseline=sum(with_base) / len(with_base) if with_base else None,
        divergences=[d for r in mine for d in r.divergences],
    )


def crossover(runs: list[GroupRun], label: str, baseline: str, sizes: list[int]) -> Crossover:
    """Where speculation pays: the batch sizes whose median speedup is at least 1.0 (`pays_at`),
    the largest of them (`pays_up_to`, None: it pays at none), the first size after it that is
    below 1.0 (`below_1_at`, None: it pays at the largest size measured) and a log2-linear
    estimate of the B where the curve crosses 1.0 between those two. A curve need not be
    monotonic (below 1.0 at B = 1 and above at B = 2 happens on a CPU)."""
    summary = summarize_label(runs, label, baseline, sizes)
    points = [(s, p.speedup.median) for s, p in summary.items() if p.speedup]
    paying = [i for i, (_s, v) in enumerate(points) if v >= 1.0]
    pays_at = [points[i][0] for i in paying]
    if not paying:
        first = points[0][0] if points else None
        return Crossover(pays_at=[], below_1_at=first, pays_up_to=None, estimate=None)
    last = paying[-1]
    if last == len(points) - 1:
        return Crossover(
            pays_at=pays_at, below_1_at=None, pays_up_to=points[last][0], estimate=None
        )
    (s0, v0), (s1, v1) = points[last], points[last + 1]
    x0, x1 = math.log2(s0), math.log2(s1)
    x = x0 + (v0 - 1.0) * (x1 - x0) / (v0 - v1)
    return Crossover(pays_at=pays_at, below_1_at=s1, pays_up_to=s0, estimate=round(2**x, 2))

"""The measuring loop of `compare`: load every profile (each distinct model once), warm each
up, then run the samples with the profiles interleaved prompt by prompt (A B A B ...), one
self-contained record per (profile, sample, repeat).

Timing, warm-up and forward counts come from decbench/measure.py, the one measurement that
`generate` and `profile` use too. Every method sees the same prompt ids and the same stop rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from decbench.backends.runner import ModelRunner
from decbench.compare.conversation import encode_turn
from decbench.compare.divergence import Divergence, diagnose
from decbench.compare.memory import MemoryProbe, PeakMemory
from decbench.constraints.base import Constraint
from decbench.constraints.build import SAMPLE, sample_schema
from decbench.errors import ConfigError
from decbench.jsonrecord import ABSENT, OMIT_NONE, Absent, JsonRecord, codec
from decbench.measure import Measurement, measure, timed_ids
from decbench.measure import warm_up as measure_warm_up
from decbench.metrics.acceptance import AcceptanceStats
from decbench.metrics.quality import quality_report
from decbench.profiles import Profile
from decbench.results import GenerationResult
from decbench.run import Session, check_profile, open_session
from decbench.suites import Sample

SCHEMA_SAMPLE = "decbench/sample/v1"


@dataclass(kw_only=True)
class SampleRecord(JsonRecord):
    """One run of one sample by one profile (decbench/sample/v1, a line of samples.jsonl;
    docs/compare.md lists the fields). It also carries Spec-Bench's answer fields: `turns`,
    `new_tokens`, `wall_time`, `decoding_steps` and `accept_lengths`."""

    schema: str = SCHEMA_SAMPLE
    profile: str  # the label
    method: str
    profile_source: str
    lossless: bool
    reference: bool  # a reference implementation (transformers' own)
    model: str
    sample_id: str
    category: str
    repeat: int
    prompts: list[str]  # [turns] the user turns
    turns: list[str]  # [turns] the answer texts
    token_ids: list[list[int]]  # [turns][new tokens]
    prompt_tokens: list[int]  # [turns]
    new_tokens: list[int]  # [turns]
    wall_time: list[float]  # [turns] seconds
    decoding_steps: list[int]  # [turns] target steps
    # [turns] target forwards, prefill included (None: a record written before they were counted)
    forward_calls: list[int] | None = field(default=None, metadata=OMIT_NONE)
    accept_lengths: list[int]  # [steps] tokens committed per target step, over all turns
    finish_reasons: list[str]  # [turns]
    ttft_s: list[float]  # [turns]
    tokens_per_s: float  # all new tokens over all wall time
    # summed over the turns; in JSON the summable counts (AcceptanceStats.totals)
    stats: AcceptanceStats = field(
        metadata=codec(AcceptanceStats.totals, AcceptanceStats.from_totals)
    )
    proposer: dict[str, Any] | Absent | None = ABSENT  # the proposer's own report
    # [turns] metrics/constraint.py, {} when unconstrained (None: an older record)
    constraint: list[dict[str, Any]] | None = field(default=None, metadata=OMIT_NONE)
    phases: dict[str, float]  # seconds per phase, summed over the turns
    memory: PeakMemory
    params: dict[str, Any]  # the method's options
    sampling: dict[str, Any]
    generation: dict[str, Any]
    environment: dict[str, Any]
    finished_at: str  # ISO time
    # [turns] metrics/quality.py, scored after the timed run (None: an older record)
    quality: list[dict[str, Any]] | None = field(default=None, metadata=OMIT_NONE)
    # against the baseline's record of the same sample and repeat; null when identical or
    # sampled, absent when not compared (the baseline's own records)
    divergence: Divergence | Absent | None = ABSENT

    @property
    def key(self) -> tuple[str, str, int]:
        """(profile label, sample id, repeat): what identifies a record in a run."""
        return (self.profile, self.sample_id, self.repeat)

    @property
    def all_token_ids(self) -> list[int]:
        """The generated ids of every turn, in order."""
        return [token for turn in self.token_ids for token in turn]


@dataclass
class Contender:
    label: str
    profile: Profile
    session: Session
    environment: dict[str, Any]
    schemas: dict[str, Constraint] = field(default_factory=dict)  # sample id -> its compiled schema


@dataclass
class Event:
    kind: str  # "warmup" | "record"
    done: int  # records finished so far (including resumed ones)
    total: int  # records planned
    label: str
    sample_id: str
    record: SampleRecord | None = None


def unique_labels(profiles: list[Profile]) -> list[str]:
    """Each profile's label (file stem or method name), made unique with -2, -3 ..."""
    labels: list[str] = []
    for profile in profiles:
        label = profile.label
        n = 2
        while label in labels:
            label = f"{profile.label}-{n}"
            n += 1
        labels.append(label)
    return labels


def check_comparable(labels: list[str], profiles: list[Profile]) -> None:
    """Same stop rules for all (generation settings), one thread count for the process."""
    first = dataclasses.asdict(profiles[0].generation)
    for label, profile in zip(labels[1:], profiles[1:], strict=True):
        other = dataclasses.asdict(profile.generation)
        for name, value in first.items():
            if other[name] != value:
                raise ConfigError(
                    f"profiles differ in generation.{name} ({labels[0]}: {value!r}, {label}: "
                    f"{other[name]!r}); compare needs identical stop rules: pass "
                    f"--set generation.{name}=... (or --max-new-tokens) to set it for all"
                )
    threads = {p.backend.threads for p in profiles}
    if len(threads) > 1:
        raise ConfigError(
            f"profiles set different backend.threads ({sorted(threads)}); torch threads are "
            "per process, so pass --threads N to set one value for all"
        )


def _model_key(profile: Profile) -> tuple:
    m, b = profile.model, profile.backend
    return (m.name, m.trust_remote_code, m.device_map, *dataclasses.astuple(b))


def open_contenders(
    labels: list[str], profiles: list[Profile], progress: Callable[[str], None]
) -> list[Contender]:
    """Build every profile's decoder; profiles on the same model and backend share one loaded
    target runner."""
    for profile in profiles:  # refuse what any profile gets wrong before loading anything
        check_profile(profile)
    targets: dict[tuple, ModelRunner] = {}
    contenders = []
    for label, profile in zip(labels, profiles, strict=True):
        shared = targets.get(_model_key(profile))
        session = open_session(profile, progress=progress, target=shared, per_sample=True)
        targets.setdefault(_model_key(profile), session.target)
        contenders.append(Contender(label, profile, session, session.environment()))
    return contenders


# -- one sample --------------------------------------------------------------------------------
def sample_constraint(contender: Contender, sample: Sample) -> Constraint | None:
    """The profile's constraint, or with constraint.schema = "sample" one compiled from the
    sample's own schema (untimed; a few milliseconds, once per sample)."""
    settings = contender.profile.constraint
    if settings.kind != "json-schema" or settings.schema != SAMPLE:
        return contender.session.constraint
    if sample.schema is None:
        raise ConfigError(
            f'sample {sample.id} has no schema, but constraint.schema = "sample" (use a suite '
            "whose samples carry one, such as json-extraction)"
        )
    if sample.id not in contender.schemas:  # compiled once, for the warm-up and every repeat
        target = contender.session.target
        contender.schemas[sample.id] = sample_schema(
            sample.schema,
            f"schema of sample {sample.id}",
            target.tokenizer,
            target.vocab_size,
            list(target.eos_token_ids),
        )
    return contender.schemas[sample.id]


def generate_turn(
    contender: Contender,
    turns: list[str],
    answers: list[str],
    max_new_tokens: int | None = None,
    constraint: Constraint | None = None,
) -> Measurement:
    """Encode and decode one turn through decbench/measure.py. `constraint` defaults to the
    session's."""
    session = contender.session
    ids, tokenize_s = timed_ids(
        lambda: encode_turn(session.target, contender.profile, turns, answers)
    )
    request = session.request(turns[-1], ids, tokenize_s, None, max_new_tokens, constraint)
    if request.constraint is None and contender.profile.constraint.schema == SAMPLE:
        raise ConfigError(  # a bare prompt has no sample to take the schema from
            f"profile '{contender.label}': constraint.schema = \"sample\" needs a suite sample "
            "with a schema, and this run has a bare prompt; give a schema file"
        )
    return measure(session, request)


def run_sample(contender: Contender, sample: Sample, repeat: int) -> SampleRecord:
    """All turns of one sample, each following this method's own earlier answers."""
    results: list[GenerationResult] = []
    walls: list[float] = []
    forwards: list[int] = []
    answers: list[str] = []
    constraint = sample_constraint(contender, sample)
    with MemoryProbe(contender.session.target.device) as memory:
        for i in range(len(sample.turns)):
            turns = list(sample.turns[: i + 1])
            turn = generate_turn(contender, turns, answers, None, constraint)
            results.append(turn.result)
            walls.append(turn.wall_s)
            forwards.append(turn.forward_calls)
            answers.append(turn.result.text)
    record = build_record(contender, sample, repeat, results, walls, memory.result(), forwards)
    record.quality = score_turns(contender, sample, results)
    return record


def score_turns(
    contender: Contender, sample: Sample, results: list[GenerationResult]
) -> list[dict[str, Any]]:
    """Text quality of each turn (decbench/metrics/quality.py): rep-n, diversity, distinct-n,
    length, coherence under the target, and exact_answer where the sample has a reference for
    the turn. Scored after the timed runs and outside the memory probe, so it changes neither
    wall times nor peak memory."""
    target = contender.session.target
    answers = [r.text for r in results]
    references = sample.reference or ()
    scored = []
    for i, result in enumerate(results):
        ids = encode_turn(target, contender.profile, list(sample.turns[: i + 1]), answers[:i])
        answer = references[i] if i < len(references) else None
        scored.append(
            quality_report(result.token_ids, ids, scorer=target, text=result.text, answer=answer)
        )
    return scored


def warm_up(contender: Contender, sample: Sample) -> None:
    """One short untimed run of the first turn (decbench/measure.py)."""
    session = contender.session
    ids = encode_turn(session.target, contender.profile, [sample.turns[0]], [])
    constraint = sample_constraint(contender, sample)
    measure_warm_up(session, session.request(sample.turns[0], ids, constraint=constraint))


def build_record(
    contender: Contender,
    sample: Sample,
    repeat: int,
    results: list[GenerationResult],
    walls: list[float],
    memory: PeakMemory,
    forwards: list[int],
) -> SampleRecord:
    """The record of one sample's turns; `forward_calls` (per turn) counts the target model's
    forwards during `generate`, prefill included."""
    phases: dict[str, float] = {}
    for r in results:
        for name, seconds in r.timings.phases.items():
            phases[name] = phases.get(name, 0.0) + seconds
    spec = contender.session.decoder.spec
    steps = AcceptanceStats.from_steps(s for r in results for s in r.steps)
    return SampleRecord(
        profile=contender.label,
        method=contender.profile.method,
        profile_source=contender.profile.source,
        lossless=contender.session.decoder.is_lossless(contender.profile.options),
        reference=spec.reference,
        model=contender.profile.model.name,
        sample_id=sample.id,
        category=sample.category,
        repeat=repeat,
        prompts=list(sample.turns),
        turns=[r.text for r in results],
        token_ids=[r.token_ids for r in results],
        prompt_tokens=[r.prompt_tokens for r in results],
        new_tokens=[len(r.token_ids) for r in results],
        wall_time=walls,
        decoding_steps=[len(r.steps) for r in results],
        forward_calls=list(forwards),
        accept_lengths=[s.emitted for r in results for s in r.steps],
        finish_reasons=[r.finish_reason for r in results],
        ttft_s=[r.timings.ttft_s for r in results],
        tokens_per_s=sum(len(r.token_ids) for r in results) / max(sum(walls), 1e-12),
        stats=AcceptanceStats.from_totals(steps.totals()),  # the counts the record stores
        proposer=results[-1].stats.get("proposer") if results else None,
        constraint=[r.constraint for r in results],
        phases=phases,
        memory=memory,
        params=dataclasses.asdict(contender.profile.options),
        sampling=dataclasses.asdict(contender.profile.sampling),
        generation=dataclasses.asdict(contender.profile.generation),
        environment=contender.environment,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


# -- the loop ----------------------------------------------------------------------------------
def planned_keys(
    labels: list[str], samples: list[Sample], repeat: int
) -> list[tuple[int, Sample, str]]:
    """Repeat by repeat, sample by sample, every profile in turn (A B A B ...)."""
    return [(r, s, label) for r in range(repeat) for s in samples for label in labels]


def run_interleaved(
    contenders: list[Contender],
    samples: list[Sample],
    repeat: int,
    warmup: int,
    done: set[tuple[str, str, int]],
    on_record: Callable[[SampleRecord], None],
    on_event: Callable[[Event], None] = lambda _e: None,
    baseline: str | None = None,
    earlier: list[SampleRecord] | None = None,
) -> None:
    """Run every planned (repeat, sample, profile) not in `done`; hand each finished record to
    `on_record` at once (which stores it durably) before starting the next. A greedy record that
    differs from the `baseline` profile's record of the same sample and repeat (run now, or among
    the `earlier` records of a resumed run) gets a `divergence` diagnosis (compare/divergence.py),
    made after the timed run."""
    by_label = {c.label: c for c in contenders}
    if baseline in by_label:  # the baseline first in each group, so its record is there to judge by
        by_label = {baseline: by_label[baseline], **by_label}
    base_records = {(r.sample_id, r.repeat): r for r in earlier or [] if r.profile == baseline}
    plan = planned_keys(list(by_label), samples, repeat)
    todo = [(r, s, label) for r, s, label in plan if (label, s.id, r) not in done]
    finished = len(plan) - len(todo)
    pending = {label for _, _, label in todo}
    for contender in contenders:
        if contender.label not in pending or not todo:
            continue
        first = next(s for _, s, label in todo if label == contender.label)
        for _ in range(warmup):
            on_event(Event("warmup", finished, len(plan), contender.label, first.id))
            warm_up(contender, first)
    for r, sample, label in todo:
        record = run_sample(by_label[label], sample, r)
        if label == baseline:
            base_records[(sample.id, r)] = record
        elif (base := base_records.get((sample.id, r))) is not None and baseline in by_label:
            judge = by_label[baseline]
            found = diagnose(record, base, judge.session.target, judge.profile)
            record.divergence = found and dataclasses.replace(found, against=baseline)
        on_record(record)
        finished += 1
        on_event(Event("record", finished, len(plan), label, sample.id, record))

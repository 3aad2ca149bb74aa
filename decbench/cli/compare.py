"""`decbench compare`: several profiles on the same prompts, interleaved, with paired speedups."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from decbench.cli import options as o
from decbench.cli.compare_render import (
    constraint_table,
    divergences,
    footnote,
    header,
    quality_table,
    results_table,
    side_by_side,
)
from decbench.cli.output import Mode, Output
from decbench.compare import Event, RunStore, make_plan, plan_profiles, run_compare, summarize
from decbench.compare.plot import plot_summary
from decbench.compare.shard import Ranks, merge_folders, parse_shard, resume_store, run_sharded
from decbench.compare.store import read_plan
from decbench.compare.sweep import expand, parse_sweep
from decbench.errors import ConfigError
from decbench.suites import DEFAULT_SUITE, FORMATS, get_suite

EXAMPLES = """

Examples:

  decbench compare profiles/greedy.toml profiles/pld.toml --suite summarization --limit 4

  decbench compare greedy pld --method hf-greedy --method hf-pld --suite input-grounded --json

  decbench compare -m greedy -m speculative --suite my_questions.jsonl --output runs/spec

  decbench compare --resume runs/spec

  decbench compare greedy pld --repeat 3 --show 2 --plot speedup.png

  accelerate launch --multi_gpu --num_processes 2 -m decbench compare greedy pld -o runs/x

  decbench compare greedy pld --shard 0/2 -o runs/a   (and --shard 1/2 -o runs/b elsewhere)

  decbench compare --merge runs/a runs/b --output runs/all

  decbench compare greedy pld recycling --suite json-extraction --json-schema sample

  decbench compare greedy dllm-threshold dllm-prophet --suite parallel --max-new-tokens 32 \
      --sweep method.threshold=0.5,0.7,0.9 --plot dllm.png

Reports per category and overall: tokens/s (median, min-max), the speedup against the
baseline (median of paired runs of the same prompt), MAT, acceptance rate, the share of
outputs token-identical to the baseline with the first divergence index, and peak memory.
Profiles run interleaved prompt by prompt after a warm-up; flags such as --max-new-tokens
apply to every profile.
"""

MethodsOpt = Annotated[
    list[str] | None,
    typer.Option("--method", "-m", help="A method by name, as one more column (repeatable)."),
]
SuiteOpt = Annotated[
    str | None,
    typer.Option(
        "--suite",
        help=f"Built-in suite (`decbench suites list`) or a JSONL file [default: {DEFAULT_SUITE}].",
    ),
]
FormatOpt = Annotated[
    str, typer.Option("--format", help=f"Suite file format: {', '.join(FORMATS)}.")
]
CategoryOpt = Annotated[
    list[str] | None,
    typer.Option("--category", "-c", help="Only these categories (repeatable)."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="At most N prompts per category.")]
SweepOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sweep",
        help="TABLE.KEY=V1,V2,...: run each profile that has the key once per value "
        "(repeatable; sweeps of one profile move together).",
    ),
]


def compare(
    profiles: Annotated[
        list[str] | None,
        typer.Argument(
            help="Profile TOML files or built-in profile names; the first is the baseline."
        ),
    ] = None,
    methods: MethodsOpt = None,
    suite: SuiteOpt = None,
    suite_format: FormatOpt = "auto",
    category: CategoryOpt = None,
    limit: LimitOpt = None,
    sweep: SweepOpt = None,
    repeat: Annotated[int, typer.Option("--repeat", "-r", help="Runs of every prompt.")] = 1,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up runs per profile.")] = 1,
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Label of the baseline [default: the first].")
    ] = None,
    show: Annotated[
        int, typer.Option("--show", help="Show the outputs of the first K prompts side by side.")
    ] = 0,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write run.json, samples.jsonl, summary.json and Spec-Bench answers here.",
        ),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue an interrupted --output folder.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw speedup per category to a .png/.svg/.pdf.")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard", help="I/N: run only prompts I, I+N, ... of the plan (then --merge)."
        ),
    ] = None,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Merge the run folders given as arguments (same plan) into --output DIR.",
        ),
    ] = False,
    model: o.ModelOpt = None,
    device: o.DeviceOpt = None,
    dtype: o.DtypeOpt = None,
    threads: o.ThreadsOpt = None,
    max_new_tokens: o.MaxNewOpt = None,
    temperature: o.TemperatureOpt = None,
    seed: o.SeedOpt = None,
    sets: o.SetOpt = None,
    json_schema: o.JsonSchemaOpt = None,
    regex: o.RegexOpt = None,
    grammar: o.GrammarOpt = None,
    allow: o.AllowOpt = None,
    include: o.IncludeOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Compare methods on the same prompts: speed, paired speedup, acceptance, exact match."""
    out = Output(Mode.json if json_out else Mode.human)
    flags = {
        "model": model,
        "device": device,
        "dtype": dtype,
        "threads": threads,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "seed": seed,
        "json_schema": json_schema,
        "regex": regex,
        "grammar": grammar,
        "allow": allow,
        "include": include,
    }
    wanted = {
        "profiles": profiles,
        "methods": methods,
        "suite": suite,
        "suite_format": suite_format,
        "category": category,
        "limit": limit,
        "repeat": repeat,
        "warmup": warmup,
        "baseline": baseline,
        "sets": sets,
        "sweeps": sweep,
        "flags": flags,
    }
    shaping = bool(profiles or methods or suite or category or limit or sets or repeat != 1)
    shaping = shaping or bool(sweep)
    shaping = shaping or any(v is not None for v in flags.values())
    if merge:
        shaped = bool(methods or suite or category or limit or sets or sweep)
        shaped = shaped or any(v is not None for v in flags.values())
        store, dropped = _merge(profiles, output, shaped, out)
        plan, records = store.plan, store.records
        summary = summarize(plan, records, store.folder, baseline)
        store.write_summary(summary)
        if dropped:
            out.progress(f"--merge: {dropped} records present in more than one folder kept once")
    else:
        ranks = Ranks.detect()
        share = parse_shard(shard).share if shard else None
        if share is not None and ranks.sharded:
            raise ConfigError("--shard splits a run without a launcher; under one, drop it")
        if ranks.sharded and resume is None and output is None:
            raise ConfigError(
                "a launched compare (accelerate launch / torchrun) needs --output DIR: each rank "
                "writes its records there and rank 0 merges them"
            )
        if resume is not None:
            if output is not None and output.resolve() != resume.resolve():
                raise ConfigError("--resume continues the run in its own folder; drop --output")
            plan = read_plan(resume.expanduser())
            if shaping:
                _check_same_plan(plan, _plan(**wanted), resume)
            store = None if ranks.sharded else resume_store(resume)
            if store is not None:
                out.progress(f"resuming {resume}: {len(store.records)} runs already recorded")
        else:
            plan = _plan(**wanted)
            store = (
                RunStore.create(output, plan) if output is not None and not ranks.sharded else None
            )
        folder = resume if resume is not None else output
        try:
            with ProgressDisplay(out) as on_event:
                if ranks.sharded:
                    done = run_sharded(
                        plan, folder, resume is not None, ranks, out.progress, on_event, baseline
                    )
                    if done is None:  # not rank 0: rank 0 reports the merged run
                        return
                    summary, store = done
                    records = store.records
                else:
                    summary, records = run_compare(
                        plan, store, out.progress, on_event, baseline, share=share
                    )
        except KeyboardInterrupt:
            if folder is not None:
                out.info(f"kept the finished runs; continue with --resume {folder}")
            raise
    if plot is not None:
        plot_summary(summary, plot)
        out.info(f"plot: {plot}")
    if json_out:
        out.data(summary)
        return
    out.info(header(summary))
    out.show(results_table(summary))
    quality = quality_table(summary)
    if quality is not None:
        out.show(quality)
    constrained = constraint_table(summary)
    if constrained is not None:
        out.show(constrained)
    if show > 0:
        for view in side_by_side(summary, records, show):
            out.show(view)
    diverged = divergences(summary)
    if diverged is not None:
        out.info(diverged)
    out.info(footnote(summary))
    if store is not None:
        out.info(f"records: {store.samples_path} · summary: {store.folder / 'summary.json'}")
        out.info(
            f"Spec-Bench answers: {store.answers.folder} (decbench speed-report {store.folder})"
        )


def _merge(
    folders: list[str] | None, output: Path | None, shaped: bool, out: Output
) -> tuple[RunStore, int]:
    """--merge DIR... -o OUT: the records of run folders made with one plan, in one folder."""
    if output is None:
        raise ConfigError("--merge needs --output DIR for the merged run")
    if shaped:
        raise ConfigError("--merge takes run folders only; the plan comes from their run.json")
    store, dropped = merge_folders([Path(f) for f in folders or []], output)
    out.progress(f"merged {len(folders or [])} run folders into {output}")
    return store, dropped


def _plan(
    profiles: list[str] | None,
    methods: list[str] | None,
    suite: str | None,
    suite_format: str,
    category: list[str] | None,
    limit: int | None,
    repeat: int,
    warmup: int,
    baseline: str | None,
    sets: list[str] | None,
    flags: dict[str, Any],
    sweeps: list[str] | None = None,
) -> dict[str, Any]:
    """The plan the options describe: profiles (files, then --method names, each expanded by
    --sweep), suite, selection."""
    specs = [(None, name) for name in profiles or []] + [(name, None) for name in methods or []]

    def build(spec: tuple[str | None, str | None], extra: list[str]):
        return o.build_profile(spec[0], spec[1], [*(sets or []), *extra], **flags)

    built, labels = expand(specs, build, [parse_sweep(s) for s in sweeps or []])
    if not built:
        raise ConfigError(
            "compare needs profiles to compare: give TOML files or built-in names, or --method "
            "(e.g. decbench compare greedy pld)"
        )
    chosen = get_suite(suite or DEFAULT_SUITE, suite_format).select(category, limit)
    selection = {"categories": category or [], "limit": limit}
    return make_plan(
        built,
        chosen,
        baseline=baseline,
        repeat=repeat,
        warmup=warmup,
        selection=selection,
        labels=labels if sweeps else None,
    )


def _check_same_plan(stored: dict[str, Any], fresh: dict[str, Any], folder: Path) -> None:
    """Options given with --resume must describe the stored run."""
    labels_a, profiles_a = plan_profiles(stored)
    labels_b, profiles_b = plan_profiles(fresh)
    if labels_a != labels_b or [p.to_dict() | {"source": ""} for p in profiles_a] != [
        p.to_dict() | {"source": ""} for p in profiles_b
    ]:
        raise ConfigError(
            f"--resume {folder}: the profiles given ({', '.join(labels_b)}) differ from the "
            f"stored run's ({', '.join(labels_a)}); drop them to continue as planned"
        )
    if (
        stored["suite"]["checksum"] != fresh["suite"]["checksum"]
        or stored["repeat"] != fresh["repeat"]
    ):
        raise ConfigError(
            f"--resume {folder}: the suite, selection or --repeat differ from the stored run; "
            "drop them to continue as planned"
        )


class ProgressDisplay:
    """A progress bar on stderr when it is a terminal, else one line per finished run."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.bar: Progress | None = None
        self.task = None

    def __enter__(self) -> Callable[[Event], None]:
        if self.out.mode is not Mode.quiet and self.out.err.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.out.err,
                transient=True,
            )
            self.bar.start()
        return self.on_event

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def on_event(self, event: Event) -> None:
        what = "warming up" if event.kind == "warmup" else "ran"
        line = f"{what} {event.label} on {event.sample_id}"
        if self.bar is None:
            if event.kind == "record" and event.record is not None:
                r = event.record
                line += f": {sum(r['new_tokens'])} tokens, {r['tokens_per_s']:.1f} tok/s"
            self.out.progress(f"[{event.done}/{event.total}] {line}")
            return
        if self.task is None:
            self.task = self.bar.add_task(line, total=event.total, completed=event.done)
        self.bar.update(self.task, description=line, completed=event.done)


compare.__doc__ = (compare.__doc__ or "") + EXAMPLES

"""`decbench compare`: several profiles on the same prompts, interleaved, with paired speedups."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from decbench.cli import options as o
from decbench.cli.batch_render import batch_footnote, batch_table
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
from decbench.cli.progress import ProgressDisplay
from decbench.compare import (
    CompareSummary,
    Plan,
    RunStore,
    check_same_plan,
    make_plan,
    run_compare,
    summarize,
)
from decbench.compare.batching import (
    BatchSummary,
    check_batch_plan,
    parse_batch_sizes,
    run_batch_compare,
)
from decbench.compare.plot import plot_batch_curve, plot_summary
from decbench.compare.shard import Ranks, merge_folders, parse_shard, resume_store, run_sharded
from decbench.compare.store import read_plan
from decbench.compare.sweep import expand, parse_sweep
from decbench.errors import ConfigError
from decbench.suites import DEFAULT_SUITE, get_suite

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

  decbench compare greedy pld eagle --batch-size 1,4 --suite spec-bench-mini --plot curve.png

  decbench compare greedy dllm-threshold dllm-prophet --suite parallel --max-new-tokens 32 \
      --sweep method.threshold=0.5,0.7,0.9 --plot dllm.png

Reports per category and overall: tokens/s (median, min-max), the speedup against the
baseline (median of paired runs of the same prompt), MAT, acceptance rate, the share of
outputs token-identical to the baseline with the first divergence index, and peak memory.
Profiles run interleaved prompt by prompt after a warm-up; flags such as --max-new-tokens
apply to every profile. With --batch-size the prompts run in groups of B as ragged batches:
tokens/s, per-request latency and speedup against the baseline at the same B, and whether every
output equals the method's batch-1 output (first divergence and logit margin where not).
"""

Summary = CompareSummary | BatchSummary

MethodsOpt = Annotated[
    list[str] | None,
    typer.Option("--method", "-m", help="A method by name, as one more column (repeatable)."),
]
SweepOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sweep",
        help="TABLE.KEY=V1,V2,...: run each profile that has the key once per value "
        "(repeatable; sweeps of one profile move together).",
    ),
]


@o.profile_flags()
def compare(
    profiles: Annotated[
        list[str] | None,
        typer.Argument(
            help="Profile TOML files or built-in profile names; the first is the baseline."
        ),
    ] = None,
    methods: MethodsOpt = None,
    suite: o.SuiteOpt = None,
    suite_format: o.FormatOpt = "auto",
    category: o.CategoryOpt = None,
    limit: o.LimitOpt = None,
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
    batch_size: Annotated[
        str | None,
        typer.Option(
            "--batch-size",
            help="Batch sizes, e.g. 1,2,4,8: throughput, latency and speedup per method and "
            "size, with --plot drawing speedup against batch size.",
        ),
    ] = None,
    json_out: o.JsonOpt = False,
    *,
    flags: o.ProfileFlags,  # packed by o.profile_flags
) -> None:
    """Compare methods on the same prompts: speed, paired speedup, acceptance, exact match."""
    out = Output(Mode.json if json_out else Mode.human)
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
        "sweeps": sweep,
        "flags": flags,
    }
    if batch_size is not None:
        for flag, given in (("--output", output), ("--resume", resume), ("--shard", shard)):
            if given is not None:
                raise ConfigError(f"--batch-size runs in memory; drop {flag} (use --json > FILE)")
        if merge or show:
            raise ConfigError("--batch-size takes neither --merge nor --show")
        sizes = parse_batch_sizes(batch_size)
        plan = _plan(**wanted)
        check_batch_plan(plan)
        summary = run_batch_compare(plan, sizes, out.progress)
        if _plot_and_json(out, summary, plot, plot_batch_curve, json_out):
            return
        out.show(batch_table(summary))
        out.info(batch_footnote(summary))
        return
    shaping = bool(profiles or methods or suite or category or limit or repeat != 1)
    shaping = shaping or flags.given or bool(sweep)
    if merge:
        shaped = bool(methods or suite or category or limit or sweep) or flags.given
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
                check_same_plan(plan, _plan(**wanted), resume)
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
    if _plot_and_json(out, summary, plot, plot_summary, json_out):
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


def _plot_and_json(
    out: Output,
    summary: Summary,
    plot: Path | None,
    draw: Callable[[Any, Path], Path],
    json_out: bool,
) -> bool:
    """Draw --plot, and print the summary with --json; True when nothing more is to be shown."""
    if plot is not None:
        draw(summary, plot)
        out.info(f"plot: {plot}")
    if json_out:
        out.data(summary.to_json())
    return json_out


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
    flags: o.ProfileFlags,
    sweeps: list[str] | None = None,
) -> Plan:
    """The plan the options describe: profiles (files, then --method names, each expanded by
    --sweep), suite, selection."""
    specs = [(None, name) for name in profiles or []] + [(name, None) for name in methods or []]

    def build(spec: tuple[str | None, str | None], extra: list[str]):
        return o.build_profile(spec[0], spec[1], [*flags.sets, *extra], **flags.values)

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


compare.__doc__ = (compare.__doc__ or "") + EXAMPLES

"""`decbench speed-report`: Spec-Bench's speed.py figures from the answer files of a compare run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.compare.speed_report import MeanStd, SpeedReport, tokenizer_counter
from decbench.compare.speed_report import speed_report as build_report

EXAMPLES = """

Examples:

  decbench compare greedy pld --suite question.jsonl --category rag --limit 2 -o runs/sb

  decbench speed-report runs/sb

  decbench speed-report runs/sb --baseline pld --json

  decbench speed-report runs/sb --tokenizer smollm2-135m

  decbench speed-report data/spec_bench/model_answer --baseline vicuna-7b-v1.3-vanilla-float16

DIR is a compare --output folder (its spec-bench/ answer files, its baseline), or a folder of
Spec-Bench answer files (run_1/, run_2/ ... or the .jsonl files directly; the baseline is a
file's name without .jsonl). Per task: MAT (mean accepted tokens, pooled over steps), tokens/s
(mean of per-question speeds), the baseline's, and their ratio; over several runs, the mean and
sample std of the per-run figures, as speed.py's mean report.
"""


def speed_report(
    folder: Annotated[Path, typer.Argument(help="A compare --output folder or answer files.")],
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Baseline label [default: the run's baseline]."),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="Count the baseline's tokens as speed.py does: re-tokenize its text with this "
            "model's tokenizer, minus one per turn [default: its new_tokens].",
        ),
    ] = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Spec-Bench's speed report (its evaluation/speed.py) from Spec-Bench answer files."""
    out = Output(Mode.json if json_out else Mode.human)
    counter = tokenizer_counter(tokenizer) if tokenizer else None
    report = build_report(folder, baseline, counter)
    if json_out:
        out.data(report.to_json())
        return
    runs = len(report.runs)
    out.info(
        f"Spec-Bench speed report of {escape(report.answers)}: baseline "
        f"{escape(report.baseline)}, {runs} run{'s' if runs > 1 else ''}; baseline tokens: "
        f"{escape(report.baseline_tokens)}"
    )
    out.show(report_table(report))


def _figure(stats: MeanStd, fmt: str, suffix: str = "") -> str:
    text = format(stats.mean, fmt) + suffix
    if stats.std is not None:
        text += f"\n[dim]± {format(stats.std, fmt)}[/dim]"
    return text


def _count(per_run: list[int]) -> str:
    low, high = min(per_run), max(per_run)
    return str(low) if low == high else f"{low}–{high}"


def report_table(report: SpeedReport) -> Table:
    """One row per method and task, in speed.py's order."""
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("method", "task", "questions", "MAT", "tok/s", "baseline tok/s", "speedup"):
        table.add_column(name, justify="left" if name in ("method", "task") else "right")
    for label, tasks in report.methods.items():
        for task, figures in tasks.items():
            table.add_row(
                escape(label),
                task,
                _count(figures.questions),
                "-" if figures.mat is None else f"{figures.mat:.2f}",
                _figure(figures.tokens_per_s, ".1f"),
                _figure(figures.baseline_tokens_per_s, ".1f"),
                _figure(figures.speedup, ".3f", "×"),
            )
        table.add_section()
    return table


speed_report.__doc__ = (speed_report.__doc__ or "") + EXAMPLES

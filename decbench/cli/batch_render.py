"""Rich views of a batch-compare summary (`compare --batch-size`): one row per method and batch
size, and where each method's speedup crosses 1.0. They read the summary and compute nothing."""

from __future__ import annotations

from rich import box
from rich.table import Table

from decbench.cli.compare_render import speedup_cell
from decbench.compare.batching import BatchPoint, BatchSummary, Crossover
from decbench.compare.stats import Spread


def _speedup(entry: BatchPoint) -> str:
    return "base" if entry.speedup is None else speedup_cell(entry.speedup)


def _identical(entry: BatchPoint) -> str:
    share = entry.identical_to_batch1
    if share is None:
        return "-"
    text = f"{share:.0%}"
    first = entry.divergences[0] if entry.divergences else None
    if first is not None:
        tie = "near-tie" if first.near_tie else "NOT a near-tie"
        text += f"\n[dim]≠ at {first.position}, margin {first.margin:.2g} ({tie})[/dim]"
    return text


def _ms(stats: Spread | None) -> str:
    if not stats:
        return "-"
    return f"{stats.median * 1000:.0f}\n[dim]max {stats.max * 1000:.0f}[/dim]"


def batch_table(summary: BatchSummary) -> Table:
    """Per method and batch size: batch throughput, per-request latency, speedup against the
    baseline at the same batch size, MAT, and the share of outputs equal to batch 1."""
    table = Table(
        title=f"{summary.suite.name} · speedup vs {summary.baseline} per batch size",
        box=box.SIMPLE_HEAD,
    )
    for name in ("method", "B", "tok/s", "latency ms", "speedup", "MAT", "= batch 1"):
        table.add_column(name, justify="left" if name == "method" else "right")
    for profile in summary.profiles:
        for size in summary.batch_sizes:
            entry = summary.results[profile.label][size]
            table.add_row(
                profile.label,
                str(size),
                f"{entry.tokens_per_s:.1f}",
                _ms(entry.latency_s),
                _speedup(entry),
                "-" if entry.mat is None else f"{entry.mat:.2f}",
                _identical(entry),
            )
        table.add_section()
    return table


def crossover_text(cross: Crossover, baseline: str) -> str:
    """Where a method pays, from compare/batching.crossover."""
    if cross.pays_up_to is None:
        return f"slower than {baseline} at every batch size measured"
    pays = ", ".join(str(b) for b in cross.pays_at or [cross.pays_up_to])
    if cross.below_1_at is None:
        return f"pays at batch size {pays} (the largest measured pays)"
    return (
        f"pays at batch size {pays}, below 1.0× from {cross.below_1_at} "
        f"(crossing near B ≈ {cross.estimate})"
    )


def batch_footnote(summary: BatchSummary) -> str:
    """One line per method: up to which batch size it pays, where it crosses 1.0."""
    lines = []
    for label, cross in summary.crossover.items():
        lines.append(f"{label}: {crossover_text(cross, summary.baseline)}")
    env = summary.environment
    lines.append(
        f"{env.get('cpu') or env['device']} · {env.get('threads', '?')} threads · {env['dtype']} · "
        f"{summary.repeat} repeat(s); latency: each request's batch start to its own finish"
    )
    return "\n".join(lines)

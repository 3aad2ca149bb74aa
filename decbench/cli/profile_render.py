"""Terminal views of a profile report: bar charts drawn with block characters, so they read
the same without colour and fit 80 columns. They compute nothing."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from decbench.compare.profiling import ProfileReport

BAR = 28  # characters of the longest bar


def _bar(value: float, largest: float) -> str:
    if largest <= 0:
        return ""
    cells = value / largest * BAR
    full = int(cells)
    return "█" * full + ("▌" if cells - full >= 0.5 else "")


def _table(title: str, *columns: tuple[str, str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    return table


def phases_chart(report: ProfileReport) -> Table:
    phases = report.phases
    largest = max((p.seconds for p in phases.values()), default=0.0)
    table = _table(
        f"where the time goes ({report.profile}, {report.tokens} tokens)",
        ("phase", "left"),
        ("", "left"),
        ("share", "right"),
        ("ms/token", "right"),
    )
    for name, p in phases.items():
        table.add_row(name, _bar(p.seconds, largest), f"{p.share:.0%}", f"{p.ms_per_token:.1f}")
    return table


def verify_chart(report: ProfileReport) -> Table:
    curve = report.verify_cost
    largest = max((point.median_ms for point in curve), default=0.0)
    table = _table(
        "verify cost: one target forward over n new tokens (median)",
        ("n", "right"),
        ("", "left"),
        ("ms", "right"),
        ("× n=1", "right"),
    )
    for point in curve:
        table.add_row(
            str(point.tokens),
            _bar(point.median_ms, largest),
            f"{point.median_ms:.1f}",
            f"{point.relative:.2f}",
        )
    return table


def acceptance_chart(report: ProfileReport) -> Table | Text:
    rows = report.position_acceptance
    if not rows:
        return Text("acceptance per draft position: this method drafts nothing", style="dim")
    table = _table(
        "acceptance per draft position (share of offered drafts accepted there)",
        ("pos", "right"),
        ("", "left"),
        ("rate", "right"),
        ("accepted/offered", "right"),
    )
    for row in rows:
        rate = row.rate
        table.add_row(
            str(row.position),
            _bar(rate or 0.0, 1.0),
            "-" if rate is None else f"{rate:.0%}",
            f"{row.accepted}/{row.offered}",
        )
    return table


def prediction_view(report: ProfileReport) -> Group:
    p = report.prediction
    measured = p.measured_speedup
    measured_text = "-" if not measured else f"{measured.median:.2f}×"
    if measured and measured.n > 1:
        measured_text += f" ({measured.min:.2f}–{measured.max:.2f})"
    table = _table(f"speedup over {report.baseline}", ("", "left"), ("", "right"))
    table.show_header = False
    if p.drafts:
        table.add_row("acceptance alpha (i.i.d. estimate)", _num(p.alpha, ".3f"))
        table.add_row("draft tokens per drafting step k", _num(p.k))
        table.add_row("steps that drafted", _num(p.drafting_share, ".0%"))
        table.add_row("cost ratio c (draft token / T(1))", _num(p.c, ".3f"))
        table.add_row("tokens per step: predicted", _num(p.expected_tokens_per_step))
    table.add_row("tokens per step: measured (MAT)", _num(p.measured_tokens_per_step))
    table.add_row("predicted, Leviathan E/(kc+1)", f"{p.leviathan_speedup:.2f}×")
    if p.drafts:
        table.add_row(
            f"predicted, with measured T({_num(p.mean_verified_tokens, '.1f')})",
            _num(p.verify_aware_speedup, ".2f", "×"),
        )
    table.add_row("measured (median of paired runs)", measured_text)
    return Group(table)


def _num(value: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else format(value, fmt) + suffix

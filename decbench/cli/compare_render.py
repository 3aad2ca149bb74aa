"""Rich views of a compare summary: the results table (one row per category and profile) and
the side-by-side outputs. They read the summary and records and compute nothing themselves."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from decbench.compare.harness import SampleRecord
from decbench.compare.stats import ExactMatch, FirstDivergence, GroupMetrics, Spread
from decbench.compare.summary import CompareSummary


def _range(stats: Spread | None, fmt: str) -> str:
    if not stats:
        return "-"
    text = format(stats.median, fmt)
    if stats.n > 1:
        text += f"\n[dim]{format(stats.min, fmt)}–{format(stats.max, fmt)}[/dim]"
    return text


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _exact(match: ExactMatch | None) -> str:
    if match is None:
        return "base"
    if match.rate is None:
        return "-"
    text = f"{match.rate:.0%}"
    first = match.first_divergence.min
    if first is not None:
        text += f"\n[dim]≠ at {first}[/dim]"
    return text


def _speedup(metrics: GroupMetrics) -> str:
    if metrics.exact_match is None:
        return "base"
    return speedup_cell(metrics.speedup) if metrics.speedup else "-"


def speedup_cell(stats: Spread) -> str:
    """A speedup spread as a table cell: the median, and the min–max below when it has one."""
    text = f"{stats.median:.2f}×"
    if stats.n > 1:
        text += f"\n[dim]{stats.min:.2f}–{stats.max:.2f}[/dim]"
    return text


def results_table(summary: CompareSummary) -> Table:
    """Per category (then overall): tokens/s and speedup as median with min–max below, MAT,
    target forwards per token, acceptance, exact match against the baseline (with the first
    divergence), memory."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
    for name, justify in [
        ("category", "left"),
        ("profile", "left"),
        ("tok/s", "right"),
        ("speedup", "right"),
        ("MAT", "right"),
        ("fwd/tok", "right"),
        ("acc", "right"),
        ("exact", "right"),
        ("+MB", "right"),
    ]:
        table.add_column(name, justify=justify, overflow="fold")
    groups = summary.groups
    labels = summary.labels
    for number, group in enumerate(groups):
        for i, label in enumerate(labels):
            m = summary.results[label].group(group)
            if not m.runs:
                continue
            delta = m.peak_memory_delta_mb
            table.add_row(
                group if i == 0 else "",
                escape(label),
                _range(m.tokens_per_s, ".1f"),
                _speedup(m),
                "-" if m.mat is None else f"{m.mat:.2f}",
                _ratio(m.forward_calls_per_token),
                _percent(m.acceptance_rate),
                _exact(m.exact_match),
                "-" if delta is None else f"{delta:.0f}",
                end_section=number < len(groups) - 1 and i == len(labels) - 1,
            )
    return table


def constraint_table(summary: CompareSummary) -> Table | None:
    """Overall, per constrained profile: the share of outputs that satisfy the constraint, mask
    time per decoding step and as a share of generation time, and the share of draft tokens the
    constraint pruned. None when no profile ran under a constraint."""
    rows = [(label, c) for label in summary.labels if (c := summary.overall(label).constraint)]
    if not rows:
        return None
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
    table.add_column("profile", overflow="fold")
    for name in ("constraint", "satisfied", "mask ms/step", "mask share", "pruned"):
        table.add_column(name, justify="right")
    for label, c in rows:
        per_step = c.mask_ms_per_step
        share = c.mask_share
        table.add_row(
            escape(label),
            c.kind,
            _percent(c.satisfied),
            "-" if per_step is None else f"{per_step:.3f}",
            "-" if share is None else f"{share:.2%}",
            _percent(c.pruned_share),
        )
    return table


def quality_table(summary: CompareSummary) -> Table | None:
    """Overall text quality per profile (decbench/metrics/quality.py): rep-2/4, diversity,
    pooled distinct-2, coherence (nats/token under the target), length, for lossy methods the
    share of outputs identical to greedy's (=greedy) and of answers (first lines) equal to
    greedy's (=ans), and on suites with reference answers the exact-answer accuracy (answer).
    None when no record carried quality."""
    rows = [(label, q) for label in summary.labels if (q := summary.overall(label).quality)]
    if not rows:
        return None
    answered = any(q.exact_answer is not None for _, q in rows)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
    table.add_column("profile", overflow="fold")
    names = ["rep-2", "rep-4", "div", "dist-2", "coh", "len", "=greedy", "=ans"]
    for name in names + (["answer"] if answered else []):
        table.add_column(name, justify="right")
    for label, q in rows:
        agree = q.agreement_with_greedy
        cells = [
            escape(label),
            _number(q.rep_2, ".1f"),
            _number(q.rep_4, ".1f"),
            _number(q.diversity, ".2f"),
            _number(q.corpus_distinct_2, ".2f"),
            _number(q.coherence, ".2f"),
            _number(q.length, ".0f"),
            "-" if agree is None else _percent(agree.identical),
            "-" if agree is None else _percent(agree.answer_agreement),
        ]
        if answered:
            cells.append(_percent(q.exact_answer))
        table.add_row(*cells)
    return table


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def header(summary: CompareSummary) -> Text:
    suite = summary.suite
    env = summary.environment
    line = (
        f"suite {suite.name} · {suite.count} prompts × {summary.repeat} repeat(s) · "
        f"baseline {summary.baseline} · {env.get('model')} on {env['device']} "
        f"{env['dtype']}, {env['threads']} thread(s) · {env['cpu']}"
    )
    return Text(line, style="cyan")


def divergences(summary: CompareSummary) -> Text | None:
    """One line per profile whose outputs left the baseline's: how many, and whether each was a
    near-tie of the target (compare/divergence.py), naming the first one that was not."""
    lines = []
    for label in summary.labels:
        match = summary.overall(label).exact_match
        if match is not None and match.first_divergence.diverged:
            lines.append(f"{label}: {_divergence_line(match.first_divergence)}")
    return Text("\n".join(lines)) if lines else None


def _divergence_line(first: FirstDivergence) -> str:
    n = len(first.diverged)
    count = f"{n} divergence{'s' if n > 1 else ''}"
    threshold = f"margin < {first.near_tie_threshold:g}"
    ties, bad, unjudged = first.near_ties, first.not_near_ties, first.unjudged
    if unjudged == n:
        return f"{count}, not judged (sampled runs, or records without a diagnosis)"
    if ties == n:
        return f"{count}, all near-ties ({threshold})"
    text = f"{count}: {ties} near-tie{'s' if ties != 1 else ''} ({threshold}), {bad} not"
    if unjudged:
        text += f", {unjudged} not judged"
    worst = next((d for d in first.diverged if d.diagnosis and not d.diagnosis.near_tie), None)
    if worst is not None and worst.diagnosis is not None:
        d = worst.diagnosis
        gap = "-" if d.gap is None else f"{d.gap:.3g}"
        text += (
            f"; first: {worst.sample_id} token {worst.index}, {d.token} for "
            f"{d.baseline_token}, logit gap {gap} (top-2 margin {d.margin:.3g})"
        )
    return text


def footnote(summary: CompareSummary) -> Text:
    text = (
        "tok/s and speedup: median over runs (min–max below); speedup = paired ratio of tokens/s "
        "against the baseline on the same prompt and repeat · MAT = tokens per target step incl. "
        "the bonus token · fwd/tok = target-model forwards (dLLMs: denoiser forwards), prefill "
        "included, per generated token (greedy = 1) · exact = share of outputs token-identical "
        "to the baseline (≠ at = first divergence index) · +MB = peak memory rise during a run"
    )
    if any(summary.overall(label).quality for label in summary.labels):
        text += (
            "\nquality (mean over outputs): rep-n = % repeated n-grams, div = Π(1 − rep-n) for "
            "n = 2..4, dist-2 = distinct bigrams of all outputs pooled, coh = mean log-likelihood "
            "per token under the target, =greedy = share identical to greedy's output, =ans = "
            "share whose answer (first line, normalised) is greedy's, answer = exact-answer "
            "accuracy against the suite's references"
        )
    if any(summary.overall(label).constraint for label in summary.labels):
        text += (
            "\nconstraint: satisfied = share of outputs that satisfy it (JSON validated against "
            "the schema) · mask ms/step = mask time per decoding step · mask share = mask time / "
            "generation time · pruned = share of draft tokens the constraint cut"
        )
    if not summary.complete:
        text += f"\nINCOMPLETE: {summary.records} of {summary.expected_records} runs recorded"
    return Text(text, style="dim")


def side_by_side(summary: CompareSummary, records: list[SampleRecord], count: int) -> list[Any]:
    """The outputs of every profile for the first `count` samples (repeat 0), one table per
    sample, one column per profile, with whether each matches the baseline."""
    labels = summary.labels
    first = {(r.profile, r.sample_id): r for r in records if r.repeat == 0}
    sample_ids = list(dict.fromkeys(r.sample_id for r in records if r.repeat == 0))
    views = []
    for sample_id in sample_ids[:count]:
        table = Table(
            title=f"{sample_id}", box=box.SQUARE, show_lines=True, expand=True, title_justify="left"
        )
        for label in labels:
            table.add_column(f"{label}\n[dim]{_verdict(summary, label, sample_id)}[/dim]", ratio=1)
        present = [first.get((label, sample_id)) for label in labels]
        some = next(r for r in present if r is not None)
        for turn, prompt in enumerate(some.prompts):
            table.add_row(*[Text(f"user: {_clip(prompt)}", style="dim")] * len(labels))
            table.add_row(*[Text(r.turns[turn]) if r else Text("-") for r in present])
        views.append(table)
    return [Group(*views)] if views else []


def _verdict(summary: CompareSummary, label: str, sample_id: str) -> str:
    if label == summary.baseline:
        return "baseline"
    match = summary.overall(label).exact_match
    for d in match.first_divergence.diverged if match else []:
        if d.sample_id == sample_id and d.repeat == 0:
            return f"differs from token {d.index}"
    return "identical to baseline"


def _clip(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"

"""`compare --plot FILE.png`: speedup per category per method, with the interquartile range
as error bars, against a line at 1× (the baseline); on a suite with reference answers (the
`parallel` suite), accuracy against forwards per token instead, the speed/accuracy trade-off of
parallel decoding (ParallelBench's view). matplotlib is an optional extra
(`pip install 'decbench[plot]'`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from decbench.errors import ConfigError, RunError

if TYPE_CHECKING:
    from decbench.compare.batching import BatchSummary
    from decbench.compare.summary import CompareSummary


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise ConfigError(
            "--plot needs matplotlib, an optional extra: pip install 'decbench[plot]' "
            "(or pip install matplotlib)"
        ) from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_path(path: Path) -> None:
    if path.suffix.lower() not in {".png", ".svg", ".pdf"}:
        raise ConfigError(f"--plot {path}: use a .png, .svg or .pdf file name")


def tradeoff_points(summary: CompareSummary) -> list[tuple[str, str, float, float]]:
    """(label, method, forwards per token, exact-answer accuracy) of every profile that has
    both, in plan order."""
    points = []
    for profile in summary.profiles:
        overall = summary.overall(profile.label)
        accuracy = overall.quality.exact_answer if overall.quality else None
        forwards = overall.forward_calls_per_token
        if accuracy is not None and forwards is not None:
            points.append((profile.label, profile.method, forwards, accuracy))
    return points


def knob_values(label: str) -> str:
    """'dllm-prophet[early_threshold=1.9,late_threshold=0.6]' -> '1.9/0.6' ('' without a
    sweep suffix)."""
    if not label.endswith("]") or "[" not in label:
        return ""
    inside = label[label.index("[") + 1 : -1]
    return "/".join(part.split("=", 1)[-1] for part in inside.split(","))


def plot_summary(summary: CompareSummary, path: Path) -> Path:
    """The trade-off plot when the suite has reference answers, else speedup bars."""
    if tradeoff_points(summary):
        return plot_tradeoff(summary, path)
    return plot_speedups(summary, path)


def plot_tradeoff(summary: CompareSummary, path: Path) -> Path:
    """Exact-answer accuracy (y) against model forwards per generated token (x), one marker per
    profile; the variants of one method (a --sweep) are joined by a line, in plan order."""
    _check_path(path)
    points = tradeoff_points(summary)
    if not points:
        raise ConfigError("--plot: no profile has both an exact-answer accuracy and forwards/token")
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    methods = list(dict.fromkeys(method for _, method, _, _ in points))
    for method in methods:
        mine = [(x, y, label) for label, m, x, y in points if m == method]
        xs, ys = [x for x, _, _ in mine], [y for _, y, _ in mine]
        marker = "*" if not method.startswith("dllm") else "o"
        ax.plot(xs, ys, marker=marker, markersize=9 if marker == "*" else 5, label=method)
        for x, y, label in mine:
            knob = knob_values(label)
            if knob:
                ax.annotate(knob, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("model forwards per generated token (dLLMs: denoiser forwards)")
    ax.set_ylabel("exact-answer accuracy")
    ax.set_ylim(-0.03, 1.03)
    env = summary.environment
    ax.set_title(
        f"{summary.suite.name} · {summary.suite.count} prompts · {env['device']} "
        f"{env['dtype']} · labels: knob values",
        fontsize=9,
    )
    ax.legend(fontsize=7, frameon=False, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    try:
        fig.savefig(path, dpi=150)
    except OSError as e:
        raise RunError(f"--plot: cannot write {path}: {e.strerror}") from e
    finally:
        plt.close(fig)
    return path


def _speedup_plot(summary: CompareSummary | BatchSummary, path: Path) -> tuple[Any, list[str]]:
    """pyplot and the labels to draw against the baseline (every other profile)."""
    _check_path(path)
    plt = _matplotlib()
    labels = [p.label for p in summary.profiles if p.label != summary.baseline]
    if not labels:
        raise ConfigError("--plot needs at least one profile besides the baseline")
    return plt, labels


def _finish_speedups(
    fig: Any, ax: Any, plt: Any, summary: CompareSummary | BatchSummary, path: Path
) -> Path:
    """The line at 1× (the baseline), the run's title and legend, then the file."""
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    env = summary.environment
    ax.set_title(
        f"{summary.suite.name} · {env.get('model')} · {env['device']} {env['dtype']}",
        fontsize=10,
    )
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_speedups(summary: CompareSummary, path: Path) -> Path:
    """Grouped bars: one group per category (and overall), one bar per non-baseline profile."""
    plt, labels = _speedup_plot(summary, path)
    groups = summary.groups
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) * max(1, len(labels) / 2)), 4.2))
    for i, label in enumerate(labels):
        medians, low, high = [], [], []
        for group in groups:
            stats = summary.results[label].group(group).speedup
            median = stats.median if stats else float("nan")
            medians.append(median)
            low.append(median - stats.q1 if stats else 0.0)
            high.append(stats.q3 - median if stats else 0.0)
        xs = [g + (i - (len(labels) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, medians, width, yerr=[low, high], capsize=3, label=label)
        ax.bar_label(bars, labels=[f"{m:.2f}×" for m in medians], fontsize=7, label_type="center")
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    ax.set_ylabel(f"speedup vs {summary.baseline} (median, IQR)")
    return _finish_speedups(fig, ax, plt, summary, path)


def plot_batch_curve(summary: BatchSummary, path: Path) -> Path:
    """`compare --batch-size ... --plot`: median speedup against the baseline (same batch size)
    versus batch size, one line per method, with the min-max range shaded, against 1×."""
    plt, labels = _speedup_plot(summary, path)
    sizes = summary.batch_sizes
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label in labels:
        stats = [summary.results[label][size].speedup for size in sizes]
        points = [(s, st) for s, st in zip(sizes, stats, strict=True) if st]
        xs = [s for s, _ in points]
        (line,) = ax.plot(xs, [st.median for _, st in points], marker="o", label=label)
        low, high = [st.min for _, st in points], [st.max for _, st in points]
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"speedup vs {summary.baseline} at the same batch size")
    return _finish_speedups(fig, ax, plt, summary, path)

"""`decbench calibrate-entropy`: next-token entropy quantiles over greedy runs on a suite."""

from __future__ import annotations

from rich.table import Table

from decbench.calibrate import calibrate_entropy
from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.run import open_session
from decbench.suites import DEFAULT_SUITE, get_suite


@o.profile_flags(sampling=False, constraints=False)
def calibrate_entropy_cmd(
    suite: o.SuiteOpt = None,
    suite_format: o.FormatOpt = "auto",
    category: o.CategoryOpt = None,
    limit: o.LimitOpt = None,
    profile: o.ProfileOpt = None,
    json_out: o.JsonOpt = False,
    *,
    flags: o.ProfileFlags,  # packed by o.profile_flags
) -> None:
    """Measure the next-token entropy (bits) of greedy runs on a suite and print its quantiles,
    to set the entropy threshold of `cntp` and `adadec` (the p90 fires on ~10% of steps).

    The profile gives the model and generation limits; its method is not used (greedy runs).

    Examples:

      decbench calibrate-entropy --suite spec-bench-mini --limit 2 -n 64

      decbench calibrate-entropy --suite my_code.jsonl --model path/to/model --json

      decbench generate "Write a sort function" -m adadec --set method.threshold=3.1
    """
    out = Output(Mode.json if json_out else Mode.human)
    prof = flags.build("greedy" if profile is None else None, profile)
    chosen = get_suite(suite or DEFAULT_SUITE, suite_format).select(category, limit)
    session = open_session(prof, progress=out.progress)
    result = calibrate_entropy(session, chosen, out.progress)
    if json_out:
        out.data(result.to_dict())
        return
    table = Table(title=f"next-token entropy, bits: {result.model} on {result.suite}")
    for column in ("", "steps", "mean", *result.quantiles):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        "all",
        str(result.steps),
        f"{result.mean:.2f}",
        *(f"{v:.2f}" for v in result.quantiles.values()),
    )
    out.show(table)
    by = Table(title="by category")
    for column in ("category", "steps", "p50", "p90"):
        by.add_column(column, justify="left" if column == "category" else "right")
    for name, row in result.by_category.items():
        by.add_row(name, str(row["steps"]), f"{row['p50']:.2f}", f"{row['p90']:.2f}")
    out.show(by)
    p90 = result.quantiles["p90"]
    out.info(
        f"hint: --set method.threshold={p90:.2f} makes cntp/adadec fire on about 10% of greedy "
        "steps (p90)"
    )

"""`decbench profile`: timing breakdown, verify-cost curve, acceptance per draft position and the
analytic speedup prediction for one profile, measured against greedy on the same prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.cli.profile_render import (
    acceptance_chart,
    phases_chart,
    prediction_view,
    verify_chart,
)
from decbench.cli.progress import ProgressDisplay
from decbench.compare import make_plan, run_compare
from decbench.compare.conversation import encode_turn
from decbench.compare.harness import open_contenders, unique_labels
from decbench.compare.profiling import baseline_profile, export_trace, report, verify_cost_curve
from decbench.suites import DEFAULT_SUITE, Sample, Suite, get_suite

EXAMPLES = """

Examples:

  decbench profile profiles/pld.toml --suite summarization --limit 2

  decbench profile -m speculative --prompt "Summarize: ..." --json

  decbench profile profiles/speculative.toml --trace spec.json

Shows per-phase timing bars, the verify-cost curve (one target forward over 1..16 new
tokens), acceptance per draft position, and the speedup Leviathan et al. (2023) predict from
the measured acceptance, K and cost ratio, next to the speedup measured against greedy (or
plain sampling) on the same prompts.
"""


@o.profile_flags()
def profile(
    name: Annotated[
        str | None, typer.Argument(help="Profile TOML file or built-in name (or use --method).")
    ] = None,
    method: o.MethodOpt = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Profile this one prompt instead of a suite.")
    ] = None,
    suite: o.SuiteOpt = None,
    suite_format: o.FormatOpt = "auto",
    category: o.CategoryOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="At most N prompts per category.")] = 1,
    repeat: Annotated[int, typer.Option("--repeat", "-r", help="Runs of every prompt.")] = 1,
    verify_max: Annotated[
        int, typer.Option("--verify-max", help="Verify-cost curve up to this many tokens.")
    ] = 16,
    verify_repeats: Annotated[
        int, typer.Option("--verify-repeats", help="Timings per point of the curve.")
    ] = 5,
    trace: Annotated[
        Path | None,
        typer.Option("--trace", help="Export a torch profiler Chrome trace of one generation."),
    ] = None,
    json_out: o.JsonOpt = False,
    *,
    flags: o.ProfileFlags,  # packed by o.profile_flags
) -> None:
    """Profile one method: where the time goes, verify cost, acceptance, predicted speedup."""
    out = Output(Mode.json if json_out else Mode.human)
    prof = flags.build(method, name)
    if prompt is not None:
        chosen = Suite(
            "prompt",
            "the --prompt text",
            "cli",
            [Sample("prompt", "prompt", (o.read_prompt(prompt),))],
        )
    else:
        chosen = get_suite(suite or DEFAULT_SUITE, suite_format).select(category, limit)
    profiles = [baseline_profile(prof), prof]
    plan = make_plan(profiles, chosen, repeat=repeat)
    labels = unique_labels(profiles)
    contenders = open_contenders(labels, profiles, out.progress)
    with ProgressDisplay(out) as on_event:
        summary, records = run_compare(plan, on_event=on_event, contenders=contenders)
    subject = contenders[1]
    first = chosen.samples[0]
    out.progress("timing the verify-cost curve")
    ids = encode_turn(subject.session.target, subject.profile, [first.turns[0]], [])
    curve = verify_cost_curve(subject.session.target, ids, verify_max, verify_repeats)
    if trace is not None:
        out.progress(f"tracing one generation into {trace}")
        export_trace(subject, first.turns[0], trace)
    result = report(labels[1], summary, records, curve, trace)
    if json_out:
        out.data(result.to_json())
        return
    out.show(phases_chart(result))
    out.show(verify_chart(result))
    out.show(acceptance_chart(result))
    out.show(prediction_view(result))
    if trace is not None:
        out.info(f"trace: {trace} (open in chrome://tracing or ui.perfetto.dev)")


profile.__doc__ = (profile.__doc__ or "") + EXAMPLES

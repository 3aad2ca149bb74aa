"""`decbench methods`: every registered method, its parameters with defaults and declared ranges,
losslessness, and the capabilities its MethodSpec declares."""

from __future__ import annotations

import dataclasses

from rich.table import Table

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.decoders.registry import all_decoders
from decbench.options import declared_ranges


def describe() -> list[dict]:
    rows = []
    for decoder in all_decoders():
        spec = decoder.spec
        params = {
            f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in dataclasses.fields(decoder.Options)
        }
        ranges = {k: r.describe() for k, r in declared_ranges(decoder.Options).items()}
        rows.append({**dataclasses.asdict(spec), "params": params, "ranges": ranges})
    return rows


def capabilities(row: dict) -> list[str]:
    """The declared capabilities worth a line in the human table."""
    lines = []
    if row["needs_draft"]:
        lines.append("needs a draft model (method.draft)")
    if row["drafts"]:
        shape = "trees" if row["supports_tree"] else "chains"
        probs = ", with draft probabilities" if row["emits_draft_probs"] else ""
        lines.append(f"drafts {shape}{probs}")
    if not row["samples"]:
        lines.append("deterministic: temperature 0 only")
    if not row["argmax"]:
        lines.append("samples: needs temperature > 0")
    if row["constraints"]:
        lines.append("honours a \\[constraint] (--json-schema, --regex, --grammar, --allow)")
    if row["batches"]:
        lines.append("runs at batch > 1 (compare --batch-size)")
    return lines


def methods(json_out: o.JsonOpt = False) -> None:
    """List decoding methods with a line about each, their parameters and whether they are lossless.

    Examples:

      decbench methods

      decbench methods --json | python -m json.tool
    """
    out = Output(Mode.json if json_out else Mode.human)
    rows = describe()
    if json_out:
        out.data({"schema": "decbench/methods/v1", "methods": rows})
        return
    table = Table(show_lines=True)
    table.add_column("method", style="bold")
    table.add_column("lossless")
    table.add_column("about", overflow="fold")
    table.add_column("parameters (defaults)", overflow="fold")
    for row in rows:
        params = "\n".join(_param(k, v, row["ranges"].get(k)) for k, v in row["params"].items())
        lossless = "yes" if row["lossless"] else "NO (lossy)"
        if row["lossy_option"]:
            lossless += f"\n[bold]LOSSY with {row['lossy_option']}[/bold]"
        about = row["summary"] + (f"\n[dim]{row['paper']}[/dim]" if row["paper"] else "")
        about += "".join(f"\n[dim]{line}[/dim]" for line in capabilities(row))
        table.add_row(row["name"], lossless, about, params or "-")
    out.show(table)


def _param(name: str, default: object, declared: str | None) -> str:
    return f"{name} = {default!r}" + (f" ({declared})" if declared else "")

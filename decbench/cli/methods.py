"""`decbench methods`: every registered method, its parameters with defaults, and losslessness."""

from __future__ import annotations

import dataclasses

from rich.table import Table

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.decoders.registry import all_decoders


def describe() -> list[dict]:
    rows = []
    for decoder in all_decoders():
        spec = decoder.spec
        params = {
            f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in dataclasses.fields(decoder.Options)
        }
        rows.append({**dataclasses.asdict(spec), "params": params})
    return rows


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
        params = "\n".join(f"{k} = {v!r}" for k, v in row["params"].items()) or "-"
        lossless = "yes" if row["lossless"] else "NO (lossy)"
        if row["lossy_option"]:
            lossless += f"\n[bold]LOSSY with {row['lossy_option']}[/bold]"
        about = row["summary"] + (f"\n[dim]{row['paper']}[/dim]" if row["paper"] else "")
        if row["constraints"]:
            about += (
                "\n[dim]honours a \\[constraint] (--json-schema, --regex, --grammar, --allow)[/dim]"
            )
        if row["batches"]:
            about += "\n[dim]runs at batch > 1 (compare --batch-size)[/dim]"
        table.add_row(row["name"], lossless, about, params)
    out.show(table)

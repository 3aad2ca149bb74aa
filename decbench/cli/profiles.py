"""`decbench profiles list|show`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.profiles import list_builtin, load_profile

app = typer.Typer(
    help="Profiles: TOML files wiring model, backend and method.", no_args_is_help=True
)


@app.command("list")
def list_profiles(json_out: o.JsonOpt = False) -> None:
    """List the built-in profiles.

    Examples:

      decbench profiles list
    """
    out = Output(Mode.json if json_out else Mode.human)
    rows = list_builtin()
    if json_out:
        out.data({"schema": "decbench/profiles/v1", "profiles": rows})
        return
    table = Table()
    for column in ("name", "method", "description", "path"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["method"], row["description"], row["path"])
    out.show(table)


@app.command("show")
def show_profile(
    name: Annotated[str, typer.Argument(help="Profile file or built-in name.")],
    sets: o.SetOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Show a profile fully resolved: extends merged, defaults filled, overrides applied.

    Examples:

      decbench profiles show pld

      decbench profiles show profiles/speculative.toml --set method.k=6
    """
    from decbench.profiles import parse_override

    out = Output(Mode.json if json_out else Mode.human)
    profile = load_profile(name, [parse_override(s) for s in sets or []])
    data = profile.to_dict()
    if json_out:
        out.data({"schema": "decbench/profile/v1", **data})
        return
    out.show(f"[bold]{profile.source}[/bold]  {profile.description}")
    for table, values in data.items():
        if isinstance(values, dict):
            out.show(f"[{table}]")
            for key, value in values.items():
                out.show(f"  {key} = {json.dumps(value)}")

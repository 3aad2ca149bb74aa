"""`decbench models list|path`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.models import listing, resolve

app = typer.Typer(help="Models: the embedded default and where models live.", no_args_is_help=True)


@app.command("list")
def list_models(json_out: o.JsonOpt = False) -> None:
    """Show model aliases, their source and their converted folder.

    Examples:

      decbench models list
    """
    out = Output(Mode.json if json_out else Mode.human)
    rows = listing()
    if json_out:
        out.data({"schema": "decbench/models/v1", "models": rows})
        return
    table = Table()
    for column in ("name", "description", "source", "converted folder"):
        table.add_column(column, overflow="fold")
    for row in rows:
        name = row["name"] + (" (default)" if row["default"] else "")
        path = row["path"] or "[dim]not converted yet (first use converts it)[/dim]"
        table.add_row(name, row["description"], row["source"], path)
    out.show(table)
    out.info("[dim]Any Hugging Face model folder or cached id works too.[/dim]")


@app.command("path")
def model_path(
    name: Annotated[str, typer.Argument(help="Alias, folder or cached HF id.")] = "smollm2-135m",
) -> None:
    """Print the local folder of a model (converting the embedded one on first use).

    Examples:

      decbench models path smollm2-135m
    """
    out = Output()
    out.text(f"{resolve(name, out.progress)}\n")

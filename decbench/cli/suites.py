"""`decbench suites list|show`: the built-in prompt suites, and a check of suite files."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.suites import FORMATS, get_suite, list_suites

app = typer.Typer(
    help="Prompt suites: built-in ones, and JSONL files (decbench or Spec-Bench format).",
    no_args_is_help=True,
)


@app.command("list")
def list_cmd(json_out: o.JsonOpt = False) -> None:
    """List the built-in suites with their categories and sizes.

    Examples:

      decbench suites list

      decbench suites list --json
    """
    out = Output(Mode.json if json_out else Mode.human)
    suites = list_suites()
    if json_out:
        out.data(
            {"schema": "decbench/suites/v1", "suites": [s.to_dict(samples=False) for s in suites]}
        )
        return
    table = Table()
    for column in ("name", "prompts", "categories", "about"):
        table.add_column(column, overflow="fold")
    for suite in suites:
        table.add_row(
            suite.name, str(len(suite.samples)), ", ".join(suite.categories), suite.description
        )
    out.show(table)
    out.info(
        "files: decbench compare --suite FILE.jsonl (decbench or Spec-Bench question.jsonl format)"
    )


@app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="A built-in suite or a JSONL file.")],
    category: Annotated[
        list[str] | None, typer.Option("--category", "-c", help="Only these categories.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N per category.")] = None,
    suite_format: Annotated[
        str, typer.Option("--format", help=f"File format: {', '.join(FORMATS)}.")
    ] = "auto",
    full: Annotated[
        bool, typer.Option("--full", help="Print whole prompts, not the start.")
    ] = False,
    json_out: o.JsonOpt = False,
) -> None:
    """Show the prompts of a suite (also validates a suite file: errors name the line).

    Examples:

      decbench suites show summarization --limit 2 --full

      decbench suites show my_questions.jsonl --json
    """
    out = Output(Mode.json if json_out else Mode.human)
    suite = get_suite(name, suite_format).select(category, limit)
    if json_out:
        out.data({"schema": "decbench/suite/v1", **suite.to_dict()})
        return
    table = Table(title=f"{suite.name}: {len(suite.samples)} prompts ({suite.checksum()})")
    table.add_column("id", overflow="fold")
    table.add_column("category", overflow="fold")
    table.add_column("turns", overflow="fold")
    for sample in suite.samples:
        turns = [t if full else _start(t) for t in sample.turns]
        text = "\n".join(f"{i}. {escape(t)}" for i, t in enumerate(turns, 1))
        table.add_row(escape(sample.id), escape(sample.category), text)
    out.show(table)


def _start(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"

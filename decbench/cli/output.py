"""All CLI output goes through one Output object. stdout carries data only (text or JSON);
progress, hints, summaries and warnings go to stderr."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.markup import escape


class Mode(StrEnum):
    human = "human"
    json = "json"
    jsonl = "jsonl"
    quiet = "quiet"


class Output:
    def __init__(self, mode: Mode = Mode.human) -> None:
        self.mode = mode
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def human(self) -> bool:
        return self.mode is Mode.human

    def data(self, obj: Any) -> None:
        """One JSON document (json) or one record (jsonl) on stdout."""
        if self.mode is Mode.json:
            sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
        elif self.mode is Mode.jsonl:
            sys.stdout.write(json.dumps(obj, default=str) + "\n")
        sys.stdout.flush()

    def text(self, text: str) -> None:
        """Raw generated text on stdout (human mode), flushed as it arrives."""
        if self.human:
            sys.stdout.write(text)
            sys.stdout.flush()

    def show(self, renderable: Any) -> None:
        """A rich renderable that is the command's data (tables, trees) on stdout."""
        if self.human:
            self.out.print(renderable)

    def info(self, renderable: Any) -> None:
        """Summaries and hints on stderr (not in quiet mode)."""
        if self.mode is not Mode.quiet:
            self.err.print(renderable)

    def progress(self, message: str) -> None:
        if self.mode is not Mode.quiet:
            self.err.print(f"[dim]{escape(message)}[/dim]")

    def error(self, message: str) -> None:
        self.err.print(f"[bold red]error:[/bold red] {escape(message)}")

"""Progress of a measuring run on stderr: a bar on a terminal, else one line per finished run."""

from __future__ import annotations

from collections.abc import Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from decbench.cli.output import Mode, Output
from decbench.compare import Event


class ProgressDisplay:
    """A progress bar on stderr when it is a terminal, else one line per finished run."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.bar: Progress | None = None
        self.task = None

    def __enter__(self) -> Callable[[Event], None]:
        if self.out.mode is not Mode.quiet and self.out.err.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.out.err,
                transient=True,
            )
            self.bar.start()
        return self.on_event

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def on_event(self, event: Event) -> None:
        what = "warming up" if event.kind == "warmup" else "ran"
        line = f"{what} {event.label} on {event.sample_id}"
        if self.bar is None:
            if event.kind == "record" and event.record is not None:
                r = event.record
                line += f": {sum(r.new_tokens)} tokens, {r.tokens_per_s:.1f} tok/s"
            self.out.progress(f"[{event.done}/{event.total}] {line}")
            return
        if self.task is None:
            self.task = self.bar.add_task(line, total=event.total, completed=event.done)
        self.bar.update(self.task, description=line, completed=event.done)

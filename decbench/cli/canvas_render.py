"""`generate --show-steps` for masked-diffusion methods: how the canvas fills in, one row per
denoiser forward. Reads the CanvasTrace of each step; computes nothing but the canvas replay.

Marks (readable without colour): `▒` a masked position, `[tok]` a token placed by this forward
(bold), plain text a token placed earlier."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from decbench.cli.render import piece
from decbench.results import GenerationResult

MASK_MARK = "▒"
NEW_STYLE = "bold green"


def shown(tokenizer, token: int) -> str:
    """A token's text on one line."""
    return piece(tokenizer, token).replace("\n", "⏎").replace("\t", "⇥")


def canvas_steps(result: GenerationResult, tokenizer, limit: int) -> Table:
    """The first `limit` forwards of a dllm-* generation as canvas snapshots."""
    length = int(result.stats.get("dllm", {}).get("canvas_length", 0))
    canvas: list[int | None] = [None] * length
    table = Table(title=f"first {limit} denoiser steps", show_edge=False, pad_edge=False)
    table.add_column("step", justify="right")
    table.add_column(Text("canvas (▒ masked, [new], ⏎ newline)"), overflow="fold")
    table.add_column("+n", justify="right")
    table.add_column("block", justify="right")
    for number, step in enumerate(result.steps[:limit], start=1):
        trace = step.canvas
        if trace is None:
            continue
        new = set(trace.positions)
        for position, token in zip(trace.positions, trace.tokens, strict=True):
            canvas[position] = token
        line = Text()
        for position, token in enumerate(canvas):
            if token is None:
                line.append(MASK_MARK, "dim")
            elif position in new:
                line.append(f"[{shown(tokenizer, token)}]", NEW_STYLE)
            else:
                line.append(shown(tokenizer, token))
        extra = f" ×{trace.reference_steps}" if trace.reference_steps > 1 else ""
        table.add_row(str(number), line, f"{len(trace.positions)}{extra}", str(trace.block))
    return table


def dllm_line(result: GenerationResult) -> Text:
    """One stderr line of the denoiser's counters (result.stats['dllm'])."""
    d = result.stats.get("dllm", {})
    per_token = d.get("steps_per_token")
    parts = [
        f"{d.get('forward_calls', 0)} denoiser forwards",
        f"{per_token:.2f} forwards/token" if per_token is not None else "no tokens",
        f"canvas {d.get('canvas_length', 0)} in blocks of {d.get('block_length', 0)}",
    ]
    if d.get("forward_rows", 0) > d.get("forward_calls", 0):
        parts.append(f"{d['forward_rows']} sequences forwarded (batched)")
    return Text("dllm: " + " · ".join(parts), style="cyan")

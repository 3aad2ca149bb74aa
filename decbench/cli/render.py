"""Rich views of results. Rendering reads result objects and never computes metrics; every
distinction is drawn with a marker or a text style as well as colour."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from decbench.results import GenerationResult

ACCEPTED_STYLE = "underline green"  # draft tokens the target accepted
BONUS_STYLE = "bold"  # tokens from the target itself (bonus or recovered)
REJECTED_STYLE = "strike red"


def piece(tokenizer, token: int, skip_special: bool = False) -> str:
    if tokenizer is None:
        return f"<{token}>"
    return tokenizer.decode([token], skip_special_tokens=skip_special)


def annotated_text(result: GenerationResult, tokenizer) -> Text:
    """The generated text with accepted draft tokens underlined and target tokens in bold."""
    text = Text()
    position = 0
    ids = result.token_ids
    for step in result.steps:
        chunk = ids[position : position + step.emitted]
        position += step.emitted
        for i, token in enumerate(chunk):
            style = ACCEPTED_STYLE if i < step.accepted else BONUS_STYLE
            text.append(piece(tokenizer, token, skip_special=True), style=style)
    return text


def legend() -> Text:
    return Text.assemble(
        ("accepted draft", ACCEPTED_STYLE),
        " (underlined) · ",
        ("target token", BONUS_STYLE),
        " (bold, bonus or recovered)",
    )


def acceptance_chain(result: GenerationResult, tokenizer, limit: int) -> Table:
    """The first `limit` steps: ✓ accepted draft tokens, ✗ rejected ones, + the target's token."""
    table = Table(title=f"first {limit} steps", show_edge=False, pad_edge=False, expand=False)
    table.add_column("step", justify="right")
    table.add_column("drafted → verified", overflow="fold")
    table.add_column("n", justify="right")
    for number, step in enumerate(result.steps[:limit], start=1):
        line = Text()
        for i, token in enumerate(step.drafted):
            ok = i < step.accepted
            mark = "✓" if ok else "✗"
            line.append(
                f"{mark}{piece(tokenizer, token)!r} ", ACCEPTED_STYLE if ok else REJECTED_STYLE
            )
        kind = "recovered" if step.recovered else ("bonus" if step.drafted else "target")
        line.append(f"+{piece(tokenizer, step.bonus)!r}", BONUS_STYLE)
        line.append(f" ({kind})", "dim")
        table.add_row(str(number), line, str(step.emitted))
    return table


def summary(result: GenerationResult) -> Text:
    t = result.timings
    stats = result.stats
    n = len(result.token_ids)
    parts = [
        f"{n} tokens in {t.total_s:.2f} s",
        f"{t.tokens_per_s:.1f} tok/s",
        f"TTFT {t.ttft_s * 1000:.0f} ms",
        f"finish: {result.finish_reason}",
    ]
    if stats.get("drafted"):
        rate = stats["acceptance_rate"]
        parts.append(f"MAT {stats['mat']:.2f}")
        parts.append(f"accepted {stats['accepted']}/{stats['drafted']} ({rate:.0%})")
    line = Text(" · ".join(parts), style="cyan")
    phases = {k: v for k, v in t.phases.items() if v > 0}
    if phases:
        total = sum(phases.values())
        split = " · ".join(
            f"{name} {secs * 1000:.0f} ms ({secs / total:.0%})"
            for name, secs in sorted(phases.items(), key=lambda kv: -kv[1])
        )
        line.append("\nphases: " + split, style="dim")
    return line


class TextStreamer:
    """Prints newly committed tokens as text, decoding the whole output each time so multi-byte
    characters split across tokens come out whole."""

    def __init__(self, write, tokenizer) -> None:
        self.write = write
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.printed = 0

    def __call__(self, tokens: list[int]) -> None:
        self.ids.extend(tokens)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the next token
            return
        self.write(text[self.printed :])
        self.printed = len(text)

"""`decbench generate`: one prompt, one method, text on stdout and a timing summary on stderr."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from decbench.backends.loader import load_runner
from decbench.cli import options as o
from decbench.cli.canvas_render import canvas_steps, dllm_line
from decbench.cli.output import Mode, Output
from decbench.cli.render import TextStreamer, acceptance_chain, annotated_text, legend, summary
from decbench.cli.tree_render import acceptance_trees
from decbench.metrics.quality import check_scorer
from decbench.run import open_session
from decbench.settings import ModelSettings

EXAMPLES = r"""
Examples:

  decbench generate "Name three colors."

  decbench generate "Summarize: ..." --method pld --show-steps 5

  decbench generate "Summarize: ..." --method recycling --show-tree 3

  echo "Write a haiku" | decbench generate - --method sample -t 0.8 --seed 1

  decbench generate @article.txt --profile profiles/speculative.toml --json

  decbench generate "Once upon a time" --raw --method momentum --quality --json

  decbench generate "Write a sentence about" --method grid-beam --include river --include bank

  decbench generate "How old is Ada?" --method dllm-dingo --regex '[0-9]{1,3} years\.'

  decbench generate "Extract name and age as JSON: Ada, 36" --json-schema profiles/schemas/person.json -m pld

  decbench generate "Capital of France?" --allow cities.txt      (one allowed answer a line)

  decbench generate "Phone number?" --regex "[0-9]{3}-[0-9]{4}"   (or --grammar rules.lark)
"""


@o.profile_flags()
def generate(
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads stdin, '@FILE' a file.")],
    method: o.MethodOpt = None,
    profile: o.ProfileOpt = None,
    raw: Annotated[bool, typer.Option("--raw", help="Skip the chat template.")] = False,
    show_steps: Annotated[
        int, typer.Option("--show-steps", help="Print the first N steps as an acceptance chain.")
    ] = 0,
    show_tree: Annotated[
        int,
        typer.Option(
            "--show-tree", help="Draw the candidate trees of the first N tree-verified steps."
        ),
    ] = 0,
    quality: Annotated[
        bool,
        typer.Option(
            "--quality",
            help="Also score coherence (one scorer forward) and, for lossy methods, agreement "
            "with the reference decoding (greedy; dllm-confidence for dllm-* methods). rep-n, "
            "diversity, distinct-n and length are always in --json.",
        ),
    ] = False,
    scorer: Annotated[
        str | None,
        typer.Option(
            "--scorer", help="Model that scores coherence with --quality (default: the target)."
        ),
    ] = None,
    json_out: o.JsonOpt = False,
    *,
    flags: o.ProfileFlags,  # packed by o.profile_flags
) -> None:
    """Generate text for one prompt and show timings (and acceptance, for speculative methods)."""
    out = Output(Mode.json if json_out else Mode.human)
    text = o.read_prompt(prompt)
    prof = flags.build(method, profile)
    session = open_session(prof, progress=out.progress)
    tokenizer = session.target.tokenizer
    drafts = session.decoder.spec.drafts
    annotate = out.human and drafts and sys.stdout.isatty()
    stream = None
    if out.human and not annotate and tokenizer is not None:
        stream = TextStreamer(out.text, tokenizer)
    scorer_runner = None
    if quality and scorer:
        scorer_runner = load_runner(ModelSettings(name=scorer), prof.backend, out.progress)
        check_scorer(session.target, scorer_runner)
    result = session.generate(
        text, raw=raw, on_tokens=stream, quality=quality, scorer=scorer_runner
    )
    if json_out:
        out.data(result.to_dict())
        return
    if annotate:
        out.show(annotated_text(result, tokenizer))
        out.info(legend())
    else:
        out.text("\n")
    if show_steps > 0 and session.decoder.spec.diffusion:
        out.show(canvas_steps(result, tokenizer, show_steps))
    elif show_steps > 0:
        out.show(acceptance_chain(result, tokenizer, show_steps))
    if show_tree > 0:
        out.show(acceptance_trees(result, tokenizer, show_tree))
    out.info(summary(result))
    if session.decoder.spec.diffusion:
        out.info(dllm_line(result))
    if quality:
        out.info(quality_line(result.quality))
    if result.constraint:
        out.info(constraint_line(result.constraint))


def constraint_line(c: dict) -> str:
    """One stderr line about the constraint: satisfied, mask time, drafts pruned."""
    parts = [
        "satisfied" if c["satisfied"] else "NOT satisfied (length limit reached?)",
        f"mask {c['mask_ms_per_step']:.2f} ms/step ({c['mask_share']:.1%} of the time)",
    ]
    if c["drafted"]:
        parts.append(f"{c['pruned']} of {c['drafted']} draft tokens pruned")
    return f"constraint {c['kind']}: " + " · ".join(parts)


def quality_line(q: dict) -> str:
    """One stderr line of the quality metrics measured for this generation."""
    parts = [
        f"rep-2 {q['rep_2']:.1f}",
        f"rep-4 {q['rep_4']:.1f}",
        f"diversity {q['diversity']:.2f}",
    ]
    if q.get("coherence") is not None:
        parts.append(f"coherence {q['coherence']:.2f} nats/token")
    if "first_divergence" in q:
        divergence = q["first_divergence"]
        reference = q.get("agreement_reference", "greedy")
        parts.append(
            f"identical to {reference}"
            if divergence is None
            else f"diverges from {reference} at {divergence}"
        )
    return "quality: " + " · ".join(parts)


generate.__doc__ = (generate.__doc__ or "") + EXAMPLES

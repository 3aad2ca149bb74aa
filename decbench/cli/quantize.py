"""`decbench quantize MODEL --scheme S --out DIR`: a quantized copy that profiles can use as a
target or a draft, with a report on what it costs against the original."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.quant.report import quantize_model
from decbench.quant.schemes import SCHEMES
from decbench.settings import BackendSettings

EXAMPLES = """
Examples:

  decbench quantize smollm2-135m --scheme int8-dynamic --out models/smollm2-int8

  decbench quantize smollm2-135m --scheme int4-weight --out models/smollm2-int4 --json

  decbench generate "Hi" --model models/smollm2-int8

  decbench generate "Hi" --profile speculative --set method.draft=models/smollm2-int8
"""


def quantize(
    model: Annotated[str, typer.Argument(help="Model alias, folder or cached HF id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (replaced).")],
    scheme: Annotated[
        str, typer.Option("--scheme", help=f"One of: {', '.join(SCHEMES)}.")
    ] = "int8-dynamic",
    device: o.DeviceOpt = None,
    threads: o.ThreadsOpt = None,
    tokens: Annotated[
        int, typer.Option("--tokens", help="Greedy tokens for the speed/agreement check.")
    ] = 48,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed greedy runs per model.")] = 3,
    json_out: o.JsonOpt = False,
) -> None:
    """Quantize MODEL and report size, tokens/s, perplexity and greedy agreement.

    Schemes: int8-dynamic (torch, CPU: int8 weights and activations), int8-weight and
    int4-weight (optimum-quanto: weight-only, any device). The folder loads anywhere a model
    name does: --model DIR, or draft = "DIR" for speculative decoding.
    """
    out_ = Output(Mode.json if json_out else Mode.human)
    backend = BackendSettings(device=device or "cpu", threads=threads or 0)
    report = quantize_model(model, scheme, out, backend, tokens, repeats, out_.progress)
    if json_out:
        out_.data(report.to_dict())
        return
    table = Table(title=f"{report.base} → {report.scheme} ({report.out})")
    for column in ("", "original", "quantized"):
        table.add_column(column, justify="right")
    table.add_row("weights (MB)", f"{report.base_size_mb:.1f}", f"{report.size_mb:.1f}")
    table.add_row(
        "greedy tokens/s", f"{report.base_tokens_per_s:.1f}", f"{report.tokens_per_s:.1f}"
    )
    table.add_row(
        f"perplexity ({report.ppl_tokens} tok)",
        f"{report.base_perplexity:.2f}",
        f"{report.perplexity:.2f}",
    )
    div = report.first_divergence
    agreement = "identical" if div is None else f"first divergence at token {div}"
    table.add_row(f"greedy agreement ({report.agreement_tokens} tok)", "", agreement)
    out_.show(table)


quantize.__doc__ = (quantize.__doc__ or "") + EXAMPLES

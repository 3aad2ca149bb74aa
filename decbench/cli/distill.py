"""`decbench distill TARGET --kind student|medusa|eagle --out DIR`: self-distilled drafts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from decbench.cli import options as o
from decbench.cli.output import Mode, Output
from decbench.errors import ConfigError, unknown
from decbench.train.config import default, flag
from decbench.train.kinds import kind_names
from decbench.train.trainer import DistillConfig, StepStats, run_distill

EXAMPLES = """
Examples:

  decbench distill smollm2-135m --kind student --layers 2 --vocab-subset 8192 --out drafts/student

  decbench distill smollm2-135m --kind medusa --heads 3 --vocab-subset 8192 --out drafts/medusa

  decbench distill smollm2-135m --kind medusa --steps 4000 --lr 2e-3 --lr-schedule cosine --out drafts/medusa

  decbench distill smollm2-135m --kind eagle --vocab-subset 8192 --batch 16 --steps 1500 --out drafts/eagle

  decbench distill smollm2-135m --kind student --out drafts/student --resume

  decbench generate "Hi" --profile speculative --set method.draft=drafts/student
"""


def distill(
    target: Annotated[str, typer.Argument(help="Target model alias, folder or cached HF id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (holds checkpoints).")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="student, medusa, eagle, or dllm (a masked-diffusion model; `make dllm`).",
        ),
    ] = "student",
    layers: Annotated[int, typer.Option("--layers", help="student: layers kept.")] = default(
        "layers"
    ),
    vocab_subset: Annotated[
        int, typer.Option("--vocab-subset", help="Head over the N most frequent tokens (0 = all).")
    ] = default("vocab_subset"),
    heads: Annotated[int, typer.Option("--heads", help="medusa: number of heads.")] = default(
        "heads"
    ),
    k: Annotated[
        int, typer.Option("--k", help="student, eagle: draft length of the held-out estimate.")
    ] = default("k"),
    unroll: Annotated[
        int,
        typer.Option(
            "--unroll", help="eagle: train the first N chain steps as decoding runs them."
        ),
    ] = default("unroll"),
    init: Annotated[
        str | None,
        typer.Option("--init", help="eagle: start from this trained draft (folder or alias)."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.")] = default("steps"),
    batch: Annotated[int, typer.Option("--batch", help="Sequences per step.")] = default("batch"),
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = default("lr"),
    lr_schedule: Annotated[
        str, typer.Option("--lr-schedule", help="constant, or cosine (warm-up, decay to 0).")
    ] = default("lr_schedule"),
    seed: Annotated[int, typer.Option("--seed", help="Seed for init and batches.")] = default(
        "seed"
    ),
    prompts: Annotated[
        str | None,
        typer.Option(
            "--prompts",
            help="Prompt file (lines or JSONL 'prompt'), suite name, or 'varied' (stdlib text and code).",
        ),
    ] = None,
    n_prompts: Annotated[
        int, typer.Option("--n-prompts", help="Prompts used (incl. held-out).")
    ] = default("n_prompts"),
    heldout: Annotated[int, typer.Option("--heldout", help="Held-out sequences.")] = default(
        "heldout"
    ),
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Target tokens generated per prompt.")
    ] = default("max_new_tokens"),
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Checkpoint every N steps.")
    ] = default("checkpoint_every"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint.")] = False,
    device: o.DeviceOpt = None,
    threads: o.ThreadsOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Train a draft for TARGET on the target's own generations.

    student: a few of the target's layers on its embeddings, optionally with a reduced
    vocabulary head (forward KL); load it with draft = "DIR". medusa: K heads on the target's
    last hidden state (forward KL); load them with heads = "DIR". eagle: one decoder layer that
    extrapolates the target's last hidden state (feature regression plus KL); load it with
    method = "eagle", draft = "DIR". Prints held-out acceptance and MAT at the end.
    """
    out_ = Output(Mode.json if json_out else Mode.human)
    kinds = (*kind_names(), "dllm")
    if kind not in kinds:
        raise unknown("--kind", kind, kinds)
    if kind == "dllm":  # a masked-diffusion model adapted from TARGET (`make dllm`)
        values = {
            "vocab_subset": vocab_subset,
            "heads": heads,
            "k": k,
            "unroll": unroll,
            "init": init,
            "lr_schedule": lr_schedule,
            "prompts": prompts,
            "heldout": heldout,
            "checkpoint_every": checkpoint_every,
        }
        given = {flag(name): value != default(name) for name, value in values.items()}
        given |= {"--resume": resume, "--device": device is not None}
        refuse_options("dllm", [name for name, set_ in given.items() if set_])
        distill_dllm(
            out_, target, out, layers, steps, batch, lr, seed, n_prompts, max_new_tokens, threads
        )
        return
    config = DistillConfig(
        target=target,
        kind=kind,
        out=out,
        layers=layers,
        vocab_subset=vocab_subset,
        heads=heads,
        k=k,
        unroll=unroll,
        init=init,
        steps=steps,
        batch=batch,
        lr=lr,
        lr_schedule=lr_schedule,
        seed=seed,
        prompts=prompts,
        n_prompts=n_prompts,
        heldout=heldout,
        max_new_tokens=max_new_tokens,
        checkpoint_every=checkpoint_every,
        threads=threads or 0,
        device=device or "cpu",
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}  acc≈{task.fields[acc]:.2f}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out_.err, disable=out_.mode is Mode.quiet) as bar:
        task = bar.add_task(f"distill {kind}", total=steps, loss=float("nan"), acc=0.0)

        def on_step(s: StepStats) -> None:
            bar.update(task, completed=s.step, loss=s.loss, acc=s.acceptance)

        report = run_distill(
            config, ["decbench", "distill", *sys.argv[2:]], resume, on_step, out_.progress
        )
    if json_out:
        out_.data(report.to_dict())
        return
    h = report.heldout
    out_.info(
        f"wrote {report.out}: held-out acceptance {h.acceptance_rate:.1%}, "
        f"MAT {h.mat:.2f} on {h.sequences} sequences (greedy chains)"
    )


def refuse_options(kind: str, flags: list[str]) -> None:
    """Options of the other kinds are refused with --kind `kind`, not silently ignored."""
    if flags:
        raise ConfigError(
            f"--kind {kind} does not take {', '.join(flags)} (it takes --layers, --steps, "
            "--batch, --lr, --seed, --n-prompts, --max-new-tokens, --threads)"
        )


def distill_dllm(
    out_: Output,
    target: str,
    out: Path,
    layers: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    n_prompts: int,
    max_new: int,
    threads: int | None,
) -> None:
    """--kind dllm: decbench/diffusion/adapt.py (layers 0 = all of TARGET's layers)."""
    from dataclasses import asdict

    from decbench.diffusion.adapt import AdaptConfig, adapt

    config = AdaptConfig(
        out=str(out),
        base=target,
        layers=layers,
        steps=steps,
        batch=batch,
        lr=lr,
        seed=seed,
        prompts=n_prompts,
        answer_tokens=max_new,
        threads=threads or 1,
    )
    report = adapt(config, out_.progress)
    if out_.mode is Mode.json:
        out_.data(asdict(report))
        return
    out_.info(
        f"dLLM at {out}: {report.examples} examples, data {report.data_s:.0f} s, training "
        f"{report.train_s:.0f} s, loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}"
    )


distill.__doc__ = (distill.__doc__ or "") + EXAMPLES

"""Adapt the default autoregressive model into a small masked-diffusion LM (AR-to-dLLM recipe).

1. Data (decbench/diffusion/adapt_data.py): the AR model's greedy answers to ~1000 prompts that
   are not benchmark prompts (templated parallel-suite tasks with fresh items, short questions,
   math and translation tasks, chat prompts), generated once by the distill pipeline and cached;
   each answer is padded with EOS to the canvas length, so the denoiser also learns to end (as
   LLaDA's SFT does). A few percent are held out to measure the recipe.
2. Model: the AR weights, optionally only the first N layers, run bidirectionally
   (decbench/diffusion/model.py); the mask token is an unused special token.
3. Objective and recipe (decbench/diffusion/recipe.py): LLaDA's masked diffusion loss, with
   DiffuLLaMA's attention-mask annealing from causal to bidirectional and LaViDa's
   complementary masking as options.
4. Resumable: a checkpoint (weights, optimizer, schedule, losses) is written atomically every
   `checkpoint_every` steps next to the output folder, and `--resume` continues from it. Every
   step draws its randomness from a generator seeded by (seed, step), so a resumed run makes
   the same draws as an uninterrupted one.
5. The result is written atomically (temp folder + rename) as a safetensors folder with the
   tokenizer and a `decbench-dllm.json` record of the recipe, the data checksum, the held-out
   loss and the cost.

Run: python -m decbench.diffusion.adapt --out DIR [--layers N --steps S ...] (`make dllm`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from decbench.diffusion.adapt_data import EASY_PROMPTS, Example, answer_prompts, prompt_texts
from decbench.diffusion.recipe import annealed, collate, masked_diffusion_loss
from decbench.errors import ConfigError

__all__ = ["AdaptConfig", "AdaptReport", "Example", "adapt", "collate", "masked_diffusion_loss"]

# config fields that do not change what is trained (a resumed run may change them)
RUN_ONLY = ("out", "threads", "device", "resume", "force", "checkpoint_every")


def option(default: Any, about: str) -> Any:
    """A config field with its --help text."""
    return field(default=default, metadata={"help": about})


@dataclass
class AdaptConfig:
    out: str = field(metadata={"help": "folder to write the dLLM to (required)"})
    base: str = option("smollm2-135m", "the AR model to adapt (alias or folder)")
    layers: int = option(0, "keep the first N decoder layers (0 = all)")
    steps: int = option(800, "optimizer steps")
    batch: int = option(8, "rows per step (complementary masking: batch/2 examples, twice)")
    lr: float = option(1e-4, "peak learning rate (AdamW, warm-up then cosine)")
    answer_tokens: int = option(32, "canvas length: answers are padded with EOS to this")
    max_prompt_tokens: int = option(96, "longer prompts are skipped")
    prompts: int = option(1000, "at most this many prompts for the data")
    seed: int = option(0, "seed of the data split, the masks and the batches")
    threads: int = option(1, "torch threads (CPU)")
    device: str = option("cpu", "cpu | cuda | cuda:N")
    min_t: float = option(0.05, "smallest masking ratio drawn")
    anneal: float = option(
        0.1, "share of the steps over which attention opens causal -> bidirectional"
    )
    complementary: bool = option(
        True, "each drawn example twice, with complementary masks (LaViDa)"
    )
    heldout: float = option(0.04, "share of the examples held out for the held-out loss")
    checkpoint_every: int = option(25, "steps between checkpoints")
    resume: bool = option(False, "continue from the checkpoint next to --out")
    force: bool = option(False, "rebuild even when --out already holds a model of these settings")


@dataclass
class AdaptReport:
    config: dict
    examples: int
    data_s: float
    train_s: float
    losses: list[float] = field(default_factory=list)  # mean loss per tenth of training
    samples: dict[str, str] = field(default_factory=dict)  # prompt -> dllm-confidence answer
    heldout_loss: dict[str, float] = field(default_factory=dict)  # step -> held-out loss
    data_sha256: str = ""  # checksum of the cached AR answers
    recipe: dict = field(default_factory=dict)  # papers and options, in words
    environment: dict = field(default_factory=dict)


@dataclass
class TrainState:
    """Everything a checkpoint holds besides the weights and the optimizer."""

    step: int = 0  # steps done
    losses: list[float] = field(default_factory=list)
    window: list[float] = field(default_factory=list)
    heldout: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0  # training seconds before this process


def check_config(config: AdaptConfig) -> None:
    if config.steps < 1 or config.batch < 1:
        raise ConfigError(f"steps and batch must be >= 1, got {config.steps} and {config.batch}")
    if config.complementary and config.batch % 2:
        raise ConfigError(f"--batch must be even with complementary masking, got {config.batch}")
    if not 0.0 <= config.anneal <= 1.0:
        raise ConfigError(f"--anneal must be in [0, 1], got {config.anneal}")
    if not 0.0 <= config.heldout < 0.5:
        raise ConfigError(f"--heldout must be in [0, 0.5), got {config.heldout}")
    if config.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be >= 1, got {config.checkpoint_every}")
    if not config.device.startswith(("cpu", "cuda")):
        raise ConfigError(f"--device must be cpu or cuda[:N], got '{config.device}'")


def step_generator(seed: int, step: int) -> torch.Generator:
    """The randomness of one step, independent of how the run got there (resume)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def split(examples: list[Example], share: float, seed: int) -> tuple[list, list]:
    """(train, held out): a fixed pseudo-random share held out."""
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    n = int(len(examples) * share)
    return [examples[i] for i in order[n:]], [examples[i] for i in order[:n]]


@torch.no_grad()
def heldout_loss(model, examples: list[Example], mask_id: int, config: AdaptConfig) -> float:
    """Mean masked-diffusion loss on held-out examples, bidirectional, with fixed masks."""
    if not examples:
        return float("nan")
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(12345)
    total = 0.0
    for i in range(0, len(examples), 8):
        chunk = examples[i : i + 8]
        total += masked_diffusion_loss(model, chunk, mask_id, generator, config.min_t).item() * len(
            chunk
        )
    model.train(was_training)
    return total / len(examples)


# -- checkpoints ---------------------------------------------------------------------------------
def checkpoint_path(out: str) -> Path:
    path = Path(out).expanduser()
    return path.parent / f".{path.name}.checkpoint.pt"


def trained_fields(config: AdaptConfig | dict) -> dict:
    values = config if isinstance(config, dict) else asdict(config)
    return {k: v for k, v in values.items() if k not in RUN_ONLY}


def built_report(config: AdaptConfig) -> AdaptReport | None:
    """The record of the model already at `config.out` when it was trained with the same
    settings and no run of it is pending (so `make dllm` twice builds once); else None."""
    record = Path(config.out).expanduser() / "decbench-dllm.json"
    if not record.is_file() or checkpoint_path(config.out).is_file():
        return None
    try:
        report = AdaptReport(**json.loads(record.read_text()))
    except (ValueError, TypeError):
        return None  # an unreadable or older record: rebuild
    return report if trained_fields(report.config) == trained_fields(config) else None


def save_checkpoint(path: Path, model, optimizer, schedule, state: TrainState, config) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "state": asdict(state),
            "config": trained_fields(config),
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, optimizer, schedule, config: AdaptConfig) -> TrainState:
    data = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
    if data["config"] != trained_fields(config):
        changed = sorted(k for k, v in trained_fields(config).items() if data["config"].get(k) != v)
        raise ConfigError(
            f"--resume: the checkpoint {path} was made with other settings ({', '.join(changed)}); "
            f"use the same ones, or delete it to start over"
        )
    model.load_state_dict(data["model"])
    optimizer.load_state_dict(data["optimizer"])
    schedule.load_state_dict(data["schedule"])
    return TrainState(**data["state"])


# -- training ------------------------------------------------------------------------------------
def progress_line(step: int, steps: int, loss: float, per_step: float) -> str:
    width = 20
    done = width * step // steps
    eta = per_step * (steps - step)
    return (
        f"train [{'#' * done}{'.' * (width - done)}] {step}/{steps} loss {loss:.3f} "
        f"{per_step:.2f} s/step ETA {int(eta // 60)}m{int(eta % 60):02d}s"
    )


def train(
    model,
    examples: list[Example],
    mask_id: int,
    config: AdaptConfig,
    say: Callable[[str], None],
    heldout: list[Example] | None = None,
    stop_after: int | None = None,
) -> TrainState:
    """Train in place; returns the state (losses per tenth of training, held-out losses).
    Checkpoints go next to `config.out` when it is set; `stop_after` ends early after that many
    steps (as an interruption would), for tests."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / config.steps)),
    )
    path = checkpoint_path(config.out) if config.out else None
    state = TrainState()
    if path is not None and path.is_file():
        if not config.resume:
            raise ConfigError(
                f"a checkpoint of an earlier run is at {path}; pass --resume to continue it, "
                f"or delete it to start over"
            )
        state = load_checkpoint(path, model, optimizer, schedule, config)
        say(f"resuming from step {state.step}/{config.steps} ({path})")
    tenth = max(1, config.steps // 10)
    report_every = max(1, min(10, config.steps // 100))
    started, first = time.perf_counter(), state.step
    model.train()
    while state.step < config.steps:
        if stop_after is not None and state.step - first >= stop_after:
            break
        step = state.step
        generator = step_generator(config.seed, step)
        rows = config.batch // 2 if config.complementary else config.batch
        order = torch.randint(len(examples), (rows,), generator=generator).tolist()
        opened = annealed(step, config.steps, config.anneal)
        loss = masked_diffusion_loss(
            model,
            [examples[i] for i in order],
            mask_id,
            generator,
            config.min_t,
            opened,
            config.complementary,
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        state.window.append(loss.item())
        state.step += 1
        if state.step % tenth == 0 or state.step == config.steps:
            state.losses.append(sum(state.window) / len(state.window))
            state.window = []
        if state.step % report_every == 0 or state.step == config.steps:
            per_step = (time.perf_counter() - started) / (state.step - first)
            say(progress_line(state.step, config.steps, loss.item(), per_step))
        last = state.step == config.steps
        if path is not None and (state.step % config.checkpoint_every == 0 or last):
            if heldout and (state.step % (config.checkpoint_every * 4) == 0 or last):
                state.heldout[str(state.step)] = heldout_loss(model, heldout, mask_id, config)
                say(f"held-out loss at step {state.step}: {state.heldout[str(state.step)]:.3f}")
            state.elapsed += time.perf_counter() - started
            started, first = time.perf_counter(), state.step
            save_checkpoint(path, model, optimizer, schedule, state, config)
    state.elapsed += time.perf_counter() - started
    model.eval()
    return state


RECIPE = {
    "objective": "masked diffusion, CE on masked answer tokens weighted 1/t (LLaDA, Nie et al. "
    "2025); the prompt is never masked; logits of i-1 predict i (Dream, DiffuLLaMA)",
    "anneal": "attention mask annealing causal -> bidirectional over the first `anneal` "
    "fraction of steps (DiffuLLaMA, Gong et al., ICLR 2025)",
    "complementary": "each example twice per batch with complementary masks (LaViDa, Li et al. "
    "2025)",
    "data": "the AR model's own greedy answers (self-distillation) to non-benchmark prompts",
}


def adapt(config: AdaptConfig, progress: Callable[[str], None] | None = None) -> AdaptReport:
    """Build, train and write the dLLM; returns what it cost."""
    from decbench.backends.loader import load_runner
    from decbench.diffusion.model import dllm_from_ar, mask_token_id
    from decbench.settings import BackendSettings, ModelSettings
    from decbench.train.data import sha256

    say = progress or (lambda _msg: None)
    check_config(config)
    if not config.force and (built := built_report(config)) is not None:
        say(f"{config.out} already holds a dLLM built with these settings; --force rebuilds it")
        return built
    torch.manual_seed(config.seed)
    backend = BackendSettings(threads=config.threads, device=config.device)
    ar = load_runner(ModelSettings(name=config.base), backend, say)
    start = time.perf_counter()
    texts = prompt_texts(config.prompts)
    data_path, examples = answer_prompts(
        ar, config.base, texts, config.answer_tokens, config.max_prompt_tokens, say
    )
    data_s = time.perf_counter() - start
    train_set, held = split(examples, config.heldout, config.seed)
    mask_id = mask_token_id(ar.tokenizer)
    model = dllm_from_ar(ar.model, mask_id, config.layers, source=config.base)
    say(
        f"training a {model.config.num_hidden_layers}-layer denoiser on {len(train_set)} examples "
        f"({len(held)} held out), data sha256 {sha256(data_path)[:16]}"
    )
    with torch.enable_grad():
        state = train(model, train_set, mask_id, config, say, heldout=held)
    report = AdaptReport(asdict(config), len(examples), data_s, state.elapsed, state.losses)
    report.heldout_loss = state.heldout
    report.data_sha256 = sha256(data_path)
    report.recipe = RECIPE
    report.environment = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    report.samples = sample_answers(model, ar.tokenizer, EASY_PROMPTS[:3], config)
    write_model(model, ar.tokenizer, Path(config.out).expanduser(), report)
    checkpoint_path(config.out).unlink(missing_ok=True)
    return report


def sample_answers(model, tokenizer, texts: list[str], config: AdaptConfig) -> dict[str, str]:
    """The trained denoiser's dllm-confidence answers to a few easy prompts, for the record."""
    from decbench.backends.runner import ModelRunner
    from decbench.decoders.base import DecoderContext, Request
    from decbench.decoders.dllm_confidence import DllmConfidence
    from decbench.settings import GenerationSettings, SamplingSettings

    def refuse(name: str):
        raise ConfigError(f"sampling the adapted model needs no other model (asked for {name})")

    runner = ModelRunner(model, tokenizer, name="adapted")
    decoder = DllmConfidence(
        runner, DllmConfidence.Options(block_length=16), DecoderContext(refuse)
    )
    answers = {}
    for text in texts:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        ids = list(ids if isinstance(ids, list) else ids["input_ids"])
        gen = GenerationSettings(max_new_tokens=config.answer_tokens)
        answers[text] = decoder.generate(Request(text, ids, gen, SamplingSettings())).text
    return answers


def write_model(model, tokenizer, out: Path, report: AdaptReport) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "decbench-dllm.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _flag_type(value):
    if isinstance(value, bool):
        return lambda text: {"true": True, "1": True, "false": False, "0": False}[text.lower()]
    return type(value)


EXAMPLES = """examples:
  make dllm      (the default model: these defaults, on 2 threads; DLLM_STEPS=N sets --steps)
  python -m decbench.diffusion.adapt --out ~/.cache/decbench/models/smollm2-135m-dllm \\
      --steps 800 --threads 2 --resume
  python -m decbench.diffusion.adapt --out /tmp/dllm-a --steps 200 --anneal 0 --threads 2
      (an ablation: compare heldout_loss in the two folders' decbench-dllm.json)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m decbench.diffusion.adapt",
        description=__doc__.split("\n")[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = AdaptConfig(out="")
    for spec in fields(AdaptConfig):
        flag, value, about = (
            "--" + spec.name.replace("_", "-"),
            getattr(defaults, spec.name),
            spec.metadata["help"],
        )
        if spec.name in ("resume", "force"):
            parser.add_argument(flag, action="store_true", help=about)
        else:
            parser.add_argument(
                flag,
                type=_flag_type(value),
                default=value,
                metavar="true|false" if isinstance(value, bool) else None,
                required=spec.name == "out",
                help=about if spec.name == "out" else f"{about} (default: {value})",
            )
    args = parser.parse_args(argv)
    config = AdaptConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    try:
        report = adapt(config, lambda msg: sys.stderr.write(msg + "\n"))
    except ConfigError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted; continue with --resume ({checkpoint_path(config.out)})\n")
        return 130
    sys.stderr.write(
        f"dLLM at {config.out}: {report.examples} examples, data {report.data_s:.0f} s, "
        f"training {report.train_s:.0f} s, loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

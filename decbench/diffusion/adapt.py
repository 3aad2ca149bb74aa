"""Adapt the default autoregressive model into a small masked-diffusion LM (AR-to-dLLM recipe).

1. Data: the AR model answers easy prompts (the built-in suites' short prompts when the suites
   package is there, plus a list of easy questions below) greedily; each answer is padded with
   EOS to the canvas length, so the denoiser also learns to end (as LLaDA's SFT does).
2. Model: the AR weights, optionally only the first N layers, run bidirectionally
   (decbench/diffusion/model.py); the mask token is an unused special token.
3. Objective (LLaDA, masked diffusion): per example draw t ~ U(eps, 1), mask each answer token
   with probability t (the prompt is never masked), and minimise the cross-entropy on the masked
   tokens weighted by 1/t, normalised by the answer length.
4. The result is written atomically (temp folder + rename) as a safetensors folder with the
   tokenizer and a `decbench-dllm.json` record of the recipe, the loss and the cost.

Entry points: `adapt(AdaptConfig, progress)` (library) and
`python -m decbench.diffusion.adapt --out DIR [--layers N --steps N ...]` (`make dllm`).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from decbench.errors import ConfigError

EASY_PROMPTS = [
    "What is the capital of France?",
    "What is the capital of Japan?",
    "What is the capital of Italy?",
    "What is the capital of Spain?",
    "What is the capital of Germany?",
    "What color is the sky on a clear day?",
    "What color is grass?",
    "How many days are in a week?",
    "How many legs does a dog have?",
    "How many hours are in a day?",
    "What is 2 + 2?",
    "What is 5 + 3?",
    "What is 10 minus 4?",
    "What is 3 times 4?",
    "Name three colors.",
    "Name three fruits.",
    "Name three animals.",
    "Name a planet in the solar system.",
    "What do bees make?",
    "What do cows drink?",
    "What is water made of?",
    "What is the opposite of hot?",
    "What is the opposite of big?",
    "Say hello in French.",
    "Say thank you in Spanish.",
    "What is the largest ocean on Earth?",
    "What is the boiling point of water in Celsius?",
    "Who wrote Romeo and Juliet?",
    "What is the first letter of the English alphabet?",
    "Give me a word that rhymes with cat.",
    "What season comes after winter?",
    "What animal says meow?",
    "Which is bigger, an elephant or a mouse?",
    "What is the freezing point of water in Celsius?",
    "What do plants need to grow?",
    "Write one sentence about the sun.",
    "Write one sentence about dogs.",
    "What is a baby cat called?",
    "How many months are in a year?",
    "What shape has three sides?",
]


@dataclass
class AdaptConfig:
    out: str  # folder to write the dLLM to
    base: str = "smollm2-135m"  # the AR model to adapt (alias or folder)
    layers: int = 0  # keep the first N decoder layers (0 = all)
    steps: int = 600  # optimizer steps
    batch: int = 8  # examples per step
    lr: float = 5e-5
    answer_tokens: int = 48  # canvas length: answers are padded with EOS to this
    max_prompt_tokens: int = 96  # longer prompts are skipped
    prompts: int = 200  # at most this many prompts for the data
    seed: int = 0
    threads: int = 1  # torch threads (CPU)
    min_t: float = 0.05  # smallest masking ratio drawn


@dataclass
class Example:
    prompt: list[int]  # [n_prompt] chat-templated prompt ids
    answer: list[int]  # [answer_tokens] the AR model's greedy answer, padded with EOS


@dataclass
class AdaptReport:
    config: dict
    examples: int
    data_s: float
    train_s: float
    losses: list[float] = field(default_factory=list)  # mean loss per tenth of training
    samples: dict[str, str] = field(default_factory=dict)  # prompt -> dllm-confidence answer


# -- data ----------------------------------------------------------------------------------------
def prompt_texts(limit: int) -> list[str]:
    """Short prompts from the built-in suites (when that package is installed) and EASY_PROMPTS."""
    texts = list(EASY_PROMPTS)
    try:
        from decbench.suites import get_suite

        texts += [s.turns[0] for s in get_suite("all").samples if len(s.turns[0]) < 400]
    except (ImportError, ConfigError):
        pass
    return list(dict.fromkeys(texts))[:limit]


def build_examples(ar_runner, texts: list[str], config: AdaptConfig, say) -> list[Example]:
    """The AR model's greedy answers (decbench's own greedy decoder) to the prompts."""
    from decbench.decoders.autoregressive import decode_autoregressive
    from decbench.decoders.base import NoOptions, Request
    from decbench.settings import GenerationSettings, SamplingSettings

    eos = ar_runner.eos_token_ids[0]
    tokenizer = ar_runner.tokenizer
    examples = []
    for i, text in enumerate(texts):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        ids = list(ids if isinstance(ids, list) else ids["input_ids"])
        if len(ids) > config.max_prompt_tokens:
            continue
        gen = GenerationSettings(max_new_tokens=config.answer_tokens)
        request = Request(text, ids, gen, SamplingSettings())
        answer = decode_autoregressive("greedy", NoOptions(), ar_runner, request).token_ids
        answer = answer + [eos] * (config.answer_tokens - len(answer))
        examples.append(Example(ids, answer))
        if (i + 1) % 10 == 0:
            say(f"data: {i + 1}/{len(texts)} prompts answered")
    return examples


# -- objective -----------------------------------------------------------------------------------
def collate(examples: list[Example], pad: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-pad prompts: ids [batch, P + A], real [batch, P + A] bool, P."""
    width = max(len(e.prompt) for e in examples)
    ids, real = [], []
    for e in examples:
        gap = width - len(e.prompt)
        ids.append([pad] * gap + e.prompt + e.answer)
        real.append([False] * gap + [True] * (len(e.prompt) + len(e.answer)))
    return torch.tensor(ids), torch.tensor(real), width


def masked_diffusion_loss(
    model,
    examples: list[Example],
    mask_id: int,
    generator: torch.Generator,
    min_t: float = 0.05,
) -> torch.Tensor:
    """LLaDA's objective on the answers: mask with ratio t, CE on the masked tokens / t, per
    answer length; bidirectional attention (4D mask that hides only the padding)."""
    ids, real, start = collate(examples, pad=mask_id)
    batch, length = ids.shape
    answer = ids[:, start:]  # [batch, A] clean answer tokens
    t = min_t + (1 - min_t) * torch.rand(batch, 1, generator=generator)  # [batch, 1]
    masked = torch.rand(answer.shape, generator=generator) < t  # [batch, A]
    masked[:, 0] |= ~masked.any(dim=1)  # at least one masked token per example
    noisy = ids.clone()
    noisy[:, start:] = torch.where(masked, torch.full_like(answer, mask_id), answer)
    attend = torch.zeros(batch, 1, length, length)
    attend.masked_fill_(~real[:, None, None, :], torch.finfo(attend.dtype).min)
    positions = (real.long().cumsum(dim=1) - 1).clamp(min=0)
    hidden = model.model(input_ids=noisy, attention_mask=attend, position_ids=positions)
    hidden = hidden.last_hidden_state[:, start - 1 : length - 1]  # shift: i-1 predicts i
    logits = model.lm_head(hidden[masked])  # [n_masked, vocab]
    ce = torch.nn.functional.cross_entropy(logits.float(), answer[masked], reduction="none")
    weight = (1.0 / t).expand_as(masked)[masked]
    return (ce * weight).sum() / (batch * answer.shape[1])


# -- training ------------------------------------------------------------------------------------
def train(model, examples: list[Example], mask_id: int, config: AdaptConfig, say) -> list[float]:
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / config.steps)),
    )
    model.train()
    losses, window = [], []
    for step in range(config.steps):
        order = torch.randint(len(examples), (config.batch,), generator=generator).tolist()
        loss = masked_diffusion_loss(
            model, [examples[i] for i in order], mask_id, generator, config.min_t
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        if (step + 1) % max(1, config.steps // 10) == 0 or step + 1 == config.steps:
            losses.append(sum(window) / len(window))
            say(f"train: step {step + 1}/{config.steps}, loss {losses[-1]:.3f}")
            window = []
    model.eval()
    return losses


def adapt(config: AdaptConfig, progress: Callable[[str], None] | None = None) -> AdaptReport:
    """Build, train and write the dLLM; returns what it cost."""
    from decbench.backends.loader import load_runner
    from decbench.diffusion.model import dllm_from_ar, mask_token_id
    from decbench.settings import BackendSettings, ModelSettings

    say = progress or (lambda _msg: None)
    if config.steps < 1 or config.batch < 1:
        raise ConfigError(f"steps and batch must be >= 1, got {config.steps} and {config.batch}")
    torch.manual_seed(config.seed)
    ar = load_runner(ModelSettings(name=config.base), BackendSettings(threads=config.threads), say)
    start = time.perf_counter()
    examples = load_or_build_data(ar, config, say)
    data_s = time.perf_counter() - start
    mask_id = mask_token_id(ar.tokenizer)
    model = dllm_from_ar(ar.model, mask_id, config.layers, source=config.base)
    say(f"training a {model.config.num_hidden_layers}-layer denoiser on {len(examples)} examples")
    start = time.perf_counter()
    with torch.enable_grad():
        losses = train(model, examples, mask_id, config, say)
    train_s = time.perf_counter() - start
    report = AdaptReport(asdict(config), len(examples), data_s, train_s, losses)
    report.samples = sample_answers(model, ar.tokenizer, EASY_PROMPTS[:3], config)
    write_model(model, ar.tokenizer, Path(config.out).expanduser(), report)
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


def load_or_build_data(ar, config: AdaptConfig, say) -> list[Example]:
    """Answers are cached next to the output folder, keyed by the recipe's data settings."""
    key = f"{Path(config.base).name}-{config.answer_tokens}-{config.max_prompt_tokens}-{config.prompts}"
    cache = Path(config.out).expanduser().parent / f".dllm-data-{key}.jsonl"
    if cache.is_file():
        return [Example(**json.loads(line)) for line in cache.read_text().splitlines()]
    examples = build_examples(ar, prompt_texts(config.prompts), config, say)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples))
    os.replace(tmp, cache)
    return examples


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m decbench.diffusion.adapt", description=__doc__.split("\n")[0]
    )
    defaults = AdaptConfig(out="")
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=type(value), default=value, required=name == "out")
    args = parser.parse_args(argv)
    config = AdaptConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    try:
        report = adapt(config, lambda msg: sys.stderr.write(msg + "\n"))
    except ConfigError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    sys.stderr.write(
        f"wrote {config.out}: {report.examples} examples, data {report.data_s:.0f} s, "
        f"training {report.train_s:.0f} s, loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

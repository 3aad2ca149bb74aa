"""Self-distillation data: the target's own greedy continuations of prompts, cached on disk.

Prompts come from a user file (one per line, or JSONL with a "prompt" field), a built-in suite
(when decbench.suites provides it) or decbench's own training prompts, which are disjoint from
the benchmark suites: the templated ones (prompts.py, the default) or `varied` (real stdlib text
and code, varied_prompts.py). The cache key hashes the target, the prompts and the
generation settings, so a second `distill` run on the same inputs reuses the file.

Medusa heads read only the target's last hidden state, and the target is frozen, so
`last_hidden_states` runs the target once over every sequence and caches those states (float16)
next to the data file; training steps then cost the heads alone. After the final norm the target's
logits are `hidden @ lm_head.T`, so the heads' soft labels come from the cache too.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from decbench.backends.runner import ModelRunner
from decbench.errors import ConfigError
from decbench.files import read_text
from decbench.models import cache_root


@dataclass
class Sequence:
    prompt_len: int
    ids: list[int]  # [n] prompt + the target's continuation


def read_prompts(source: str | None, limit: int) -> tuple[str, list[str]]:
    """(description, prompts)."""
    if source is None:
        from decbench.train.prompts import training_prompts

        return "decbench.train.prompts", training_prompts()[:limit]
    if source == "varied":
        from decbench.train.varied_prompts import varied_prompts

        return "decbench.train.varied_prompts", varied_prompts()[:limit]
    path = Path(source).expanduser()
    if path.is_file():
        text = read_text(path, f"--prompts file '{path}'")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return str(path), [_prompt_of(x, path, n) for n, x in enumerate(lines, 1)][:limit]
    try:
        from decbench.suites import get_suite
    except ImportError as e:
        raise ConfigError(f"--prompts: '{source}' is not a file") from e
    suite = get_suite(source)
    return f"suite:{source}", [s.turns[0] for s in suite.samples][:limit]


def _prompt_of(line: str, path: Path, number: int) -> str:
    """A plain line is the prompt; a JSON object line holds it under 'prompt'."""
    if not line.startswith("{"):
        return line
    try:
        prompt = json.loads(line)["prompt"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}:{number}: a JSON line needs a string 'prompt' ({e})") from e
    if not isinstance(prompt, str):
        raise ConfigError(f"{path}:{number}: 'prompt' must be a string")
    return prompt


def encode(runner: ModelRunner, prompt: str) -> list[int]:
    tokenizer = runner.tokenizer
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
        )
        return list(getattr(ids, "input_ids", ids))
    return tokenizer(prompt)["input_ids"]


def cache_key(target: str, prompts: list[str], max_new_tokens: int) -> str:
    blob = json.dumps({"target": target, "prompts": prompts, "n": max_new_tokens}).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@torch.inference_mode()
def continue_greedy(runner: ModelRunner, prompts: list[list[int]], n: int) -> list[list[int]]:
    """The target's greedy continuations of a batch of prompts (left-padded, cut after EOS).
    Training data only: the decoders themselves never call `generate`."""
    tokenizer = runner.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else runner.eos_token_ids[0]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = runner.model.generate(
        input_ids=ids.to(runner.device),
        attention_mask=mask.to(runner.device),
        max_new_tokens=n,
        do_sample=False,
        pad_token_id=pad,
    )[:, width:].tolist()
    eos = set(runner.eos_token_ids)
    cut = []
    for row in out:
        end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        cut.append(row[:end])
    return cut


def make_data(
    runner: ModelRunner,
    target_name: str,
    prompts: list[str],
    max_new_tokens: int,
    batch: int = 16,
    on_progress: Callable[[int, int], None] = lambda _i, _n: None,
) -> tuple[Path, list[Sequence]]:
    """Generate (or reuse) the continuations; returns the cache file and the sequences. The
    whole batches of a cached run on a prefix of `prompts` are reused: batches start at the same
    prompts as in a fresh run, so the file is the same either way. Each finished batch is also
    appended to a `.partial` file, so an interrupted run continues where it stopped."""
    folder = cache_root() / "distill-data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cache_key(target_name, prompts, max_new_tokens)}.jsonl"
    if path.is_file():
        return path, load_data(path)
    partial = path.with_suffix(".partial")
    sequences = load_data(partial) if partial.is_file() else []
    sequences = sequences[: len(sequences) - len(sequences) % batch]  # whole batches only
    if not sequences:
        sequences = cached_prefix(folder, target_name, prompts, max_new_tokens, batch)
    write_data(partial, sequences)
    encoded = [encode(runner, p) for p in prompts]
    for start in range(len(sequences), len(encoded), batch):
        chunk = encoded[start : start + batch]
        done = [
            Sequence(len(prompt_ids), prompt_ids + more)
            for prompt_ids, more in zip(
                chunk, continue_greedy(runner, chunk, max_new_tokens), strict=True
            )
        ]
        with partial.open("a") as f:
            f.write("".join(json.dumps(s.__dict__) + "\n" for s in done))
        sequences += done
        on_progress(len(sequences), len(prompts))
    write_data(path, sequences)
    partial.unlink()
    return path, sequences


def write_data(path: Path, sequences: list[Sequence]) -> None:
    """Write `sequences` to `path` atomically (JSONL, one sequence a line)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(s.__dict__) + "\n" for s in sequences))
    os.replace(tmp, path)


def cached_prefix(
    folder: Path, target_name: str, prompts: list[str], max_new_tokens: int, batch: int
) -> list[Sequence]:
    """The whole batches of the longest cached data file made from a prefix of `prompts`."""
    for n in range(len(prompts) - 1, batch - 1, -1):
        path = folder / f"{cache_key(target_name, prompts[:n], max_new_tokens)}.jsonl"
        if path.is_file():
            return load_data(path)[: n - n % batch]
    return []


def load_data(path: Path) -> list[Sequence]:
    return [Sequence(**json.loads(line)) for line in path.read_text().splitlines() if line]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@torch.inference_mode()
def last_hidden_states(
    runner: ModelRunner,
    data_path: Path,
    sequences: list[Sequence],
    batch: int = 8,
    on_progress: Callable[[int, int], None] = lambda _i, _n: None,
) -> list[torch.Tensor]:
    """The target's last hidden state (after the final norm) at every position of every
    sequence: [n_i, hidden] float16 each, cached as DATA.hidden.safetensors next to the data file
    and tied to its checksum."""
    from safetensors.torch import load_file, save_file

    path = data_path.with_suffix(".hidden.safetensors")
    checksum = sha256(data_path)
    if path.is_file() and _metadata(path).get("data_sha256") == checksum:
        return _split(load_file(str(path)))
    pad = runner.tokenizer.pad_token_id or 0
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i].ids))  # little padding
    states: list[torch.Tensor | None] = [None] * len(sequences)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        rows = [sequences[i].ids for i in chunk]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])  # right-padded
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        out = runner.model(
            input_ids=ids.to(runner.device),
            attention_mask=mask.to(runner.device),
            output_hidden_states=True,
            logits_to_keep=1,
        )
        hidden = out.hidden_states[-1].to("cpu", torch.float16)  # [b, width, hidden]
        for i, row, h in zip(chunk, rows, hidden, strict=True):
            states[i] = h[: len(row)].clone()
        on_progress(min(start + batch, len(order)), len(order))
    lengths = torch.tensor([0] + [len(s.ids) for s in sequences])
    tensors = {"hidden": torch.cat(states), "offsets": lengths.cumsum(0)}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"data_sha256": checksum})
    os.replace(tmp, path)
    return _split(tensors)


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def _split(tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """{"hidden": [total, hidden], "offsets": [n + 1]} -> n views [n_i, hidden]."""
    bounds = tensors["offsets"].tolist()
    return [tensors["hidden"][a:b] for a, b in itertools.pairwise(bounds)]

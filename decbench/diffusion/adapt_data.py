"""The adaptation data: prompts, and the AR model's own greedy answers to them, cached.

The denoiser is trained to give the answers the autoregressive model gives (self-distillation,
as the AR-to-diffusion adaptations train on the AR model's distribution), so the answers come
from the AR model and are generated once. Generation reuses the distill pipeline
(decbench/train/data.py: batched greedy continuations, one cache file per prompt list keyed by
model, prompts and length). Prompts are answered in chunks, each chunk's file being the cache of
a prefix of the list, so an interrupted run resumes from its last whole chunk.

No benchmark suite prompt is used: the QA and parallel suites stay held out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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

CHUNK = 128  # prompts answered between two cache writes


@dataclass
class Example:
    prompt: list[int]  # [n_prompt] chat-templated prompt ids
    answer: list[int]  # [answer_tokens] the AR model's greedy answer, padded with EOS


def prompt_texts(limit: int) -> list[str]:
    """Up to `limit` prompts, the sources interleaved so that any prefix mixes them: templated
    parallel-suite tasks with fresh items, short questions, math and translation tasks, and
    decbench's chat training prompts (decbench/train). None is a benchmark suite prompt."""
    from decbench.suites.parallel import training_items
    from decbench.train.prompts import training_prompts
    from decbench.train.task_prompts import math_prompts, question_prompts, translation_prompts

    sources = [
        [prompt for prompt, _ in training_items(max(1, limit * 4 // 10))],
        EASY_PROMPTS + question_prompts(),
        math_prompts()[::2] + translation_prompts()[::2],
        training_prompts()[: max(1, limit // 4)],
    ]
    placed = [((i + 0.5) / len(s), n, p) for n, s in enumerate(sources) for i, p in enumerate(s)]
    texts = [p for _, _, p in sorted(placed)]
    return list(dict.fromkeys(texts))[:limit]


def answer_prompts(
    ar_runner,
    base: str,
    texts: list[str],
    answer_tokens: int,
    max_prompt_tokens: int,
    say: Callable[[str], None],
) -> tuple[Path, list[Example]]:
    """The AR model's greedy answers to the prompts that fit, as fixed-length examples, and the
    cache file they came from (its checksum identifies the data)."""
    from decbench.train.data import encode, make_data

    eos = ar_runner.eos_token_ids[0]
    fitting = [t for t in texts if len(encode(ar_runner, t)) <= max_prompt_tokens]
    if not fitting:
        raise ConfigError(f"no prompt fits in max_prompt_tokens = {max_prompt_tokens}")
    path = None
    for end in itertools.chain(range(CHUNK, len(fitting), CHUNK), [len(fitting)]):
        path, sequences = make_data(ar_runner, base, fitting[:end], answer_tokens)
        say(f"data: {len(sequences)}/{len(fitting)} prompts answered (cache {path.name})")
    examples = []
    for s in sequences:
        answer = s.ids[s.prompt_len :][:answer_tokens]
        examples.append(
            Example(s.ids[: s.prompt_len], answer + [eos] * (answer_tokens - len(answer)))
        )
    return path, examples

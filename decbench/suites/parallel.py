"""The `parallel` suite: tasks that are trivial one token at a time and hard when many tokens are
decided at once, each with an exact answer computed from the item.

In the spirit of ParallelBench (Kang et al., "ParallelBench: Understanding the Trade-offs of
Parallel Decoding in Diffusion LLMs", 2025): when a denoiser unmasks several positions in one
step, each is sampled from its own marginal, so answers whose tokens depend on each other
(copying or reversing a list, a count, a sum, a fixed answer format) break first. An
autoregressive model decides every token after the previous one and has no such failure.

Items come from a seeded generator (`items(seed, per_kind)`): the suite is seed 0, and the dLLM
adaptation (decbench/diffusion/adapt_data.py) draws fresh items from other seeds, with any
prompt that equals a suite prompt left out, so the suite stays held out.
"""

from __future__ import annotations

import random
from collections.abc import Callable

PARALLEL = "parallel"
SUITE_SEED = 0
PER_KIND = 4  # 8 kinds x 4 = 32 samples

WORDS = (
    "apple", "river", "lamp", "cloud", "tiger", "piano", "stone", "garden", "mirror", "candle",
    "forest", "bottle", "rabbit", "window", "pencil", "orange", "bridge", "castle", "dragon",
    "planet", "spoon", "violin", "wagon", "anchor", "basket", "copper", "desert", "falcon",
    "jacket", "ladder", "marble", "needle", "pepper", "rocket", "saddle", "tunnel", "velvet",
)  # fmt: skip

Item = tuple[str, str]  # (prompt, exact answer)


def _words(rng: random.Random, low: int, high: int) -> list[str]:
    return rng.sample(WORDS, rng.randint(low, high))


def copy_list(rng: random.Random) -> Item:
    words = _words(rng, 3, 6)
    listed = ", ".join(words)
    return f"Copy this list exactly, and write nothing else: {listed}", listed


def reverse_list(rng: random.Random) -> Item:
    words = _words(rng, 3, 5)
    return (
        f"Write this list in reverse order, separated by commas: {', '.join(words)}",
        ", ".join(reversed(words)),
    )


def count_items(rng: random.Random) -> Item:
    words = _words(rng, 2, 7)
    return (
        f"How many words are in this list: {', '.join(words)}? Answer with a number only.",
        str(len(words)),
    )


def last_item(rng: random.Random) -> Item:
    words = _words(rng, 3, 6)
    return (
        f"What is the last word of this list: {', '.join(words)}? Answer with the word only.",
        words[-1],
    )


def addition(rng: random.Random) -> Item:
    a, b = rng.randint(2, 60), rng.randint(2, 40)
    return f"What is {a} + {b}? Answer with the number only.", str(a + b)


def subtraction(rng: random.Random) -> Item:
    a = rng.randint(10, 90)
    b = rng.randint(1, a - 1)
    return f"What is {a} - {b}? Answer with the number only.", str(a - b)


def yes_no(rng: random.Random) -> Item:
    a, b = rng.sample(range(1, 100), 2)
    answer = "YES" if a > b else "NO"
    return f"Is {a} greater than {b}? Answer in the form YES or NO.", answer


def uppercase(rng: random.Random) -> Item:
    word = rng.choice(WORDS)
    return f"Write the word '{word}' in capital letters, and nothing else.", word.upper()


KINDS: dict[str, Callable[[random.Random], Item]] = {
    "copy": copy_list,
    "reverse": reverse_list,
    "count": count_items,
    "last": last_item,
    "add": addition,
    "subtract": subtraction,
    "yes-no": yes_no,
    "upper": uppercase,
}


def items(seed: int, per_kind: int) -> list[tuple[str, str, str]]:
    """(kind, prompt, answer) for `per_kind` distinct prompts of every kind, interleaved."""
    rng = random.Random(seed)
    by_kind: dict[str, list[Item]] = {}
    for kind, make in KINDS.items():
        made: dict[str, str] = {}
        for _ in range(per_kind * 50):
            if len(made) == per_kind:
                break
            prompt, answer = make(rng)
            made.setdefault(prompt, answer)
        by_kind[kind] = list(made.items())
    return [
        (kind, *by_kind[kind][i])
        for i in range(per_kind)
        for kind in KINDS
        if i < len(by_kind[kind])
    ]


def prompts() -> list[tuple[str, str, str]]:
    """The suite's (kind, prompt, answer) items."""
    return items(SUITE_SEED, PER_KIND)


def training_items(count: int, seed: int = 1) -> list[tuple[str, str]]:
    """(prompt, answer) items for training, none of which is a suite prompt."""
    held_out = {prompt for _, prompt, _ in prompts()}
    out: dict[str, str] = {}
    while len(out) < count:
        for _, prompt, answer in items(seed, max(1, count // len(KINDS))):
            if prompt not in held_out:
                out.setdefault(prompt, answer)
        seed += 1
    return list(out.items())[:count]

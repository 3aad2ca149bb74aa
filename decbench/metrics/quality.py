"""Text-quality metrics for open-ended generation, computed from generated token ids.

Definitions (each written down once, here):
- rep-n = 100 × (1 − |unique n-grams| / |total n-grams|) of one generation (Welleck et al.,
  "Neural Text Generation with Unlikelihood Training", 2020; Su et al., "A Contrastive Framework
  for Neural Text Generation", 2022). 0 when the sequence has no n-gram at all (too short).
- diversity = Π_{n=2..4} (1 − rep-n / 100) (Su et al. 2022). 1 = no repeated 2/3/4-gram.
- distinct-n = |unique n-grams| / |total n-grams| (Li et al., "A Diversity-Promoting Objective
  Function for Neural Conversation Models", 2016). Per generation it equals 1 − rep-n/100; over
  a set of generations (`corpus_distinct`) the n-grams of all of them are pooled.
- length = generated tokens (ids, never re-tokenised text), EOS included when it was generated.
- coherence = mean log-likelihood (natural log, per token) of the continuation given its prompt
  under a scorer model, by default the target (Su and Collier, "Contrastive Search Is What You
  Need For Neural Text Generation", 2022, score it under OPT-2.7B). Higher is more coherent.
- agreement with greedy: the first index at which a method's tokens differ from greedy's on the
  same prompt (None when identical), and the fraction of positions that match.
- exact_answer = 1 when the output's answer equals a reference answer, else 0 (ParallelBench-style
  accuracy, Kang et al. 2025). Both sides are normalised (`normalize_answer`: the first non-empty
  line, lower case, whitespace collapsed, wrapping quotes/asterisks and trailing punctuation
  removed); the answer counts when the normalised line equals the reference, or when the line
  holds the reference as a whole phrase ("The answer is 42." holds "42"; "420" does not).
  Over suites without references, `answer_agreement` applies the same test with greedy's output
  as the reference: the share of prompts where a method gives greedy's answer.

n-grams are counted over token ids rather than whitespace words: no re-tokenising, and every
method on one model is counted the same way. Absolute values therefore differ from papers that
split words; comparisons between methods on one model are what these numbers are for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence
from typing import Any

import torch

from decbench.backends.runner import ModelRunner
from decbench.errors import ConfigError

REP_ORDERS = (2, 3, 4)  # rep-n reported, and the factors of diversity
DISTINCT_ORDERS = (1, 2)


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple]:
    """All n-grams of `tokens`, in order (with repeats)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def rep_n(tokens: Sequence[Hashable], n: int) -> float:
    """100 × (1 − unique/total n-grams); 0.0 when there is no n-gram."""
    grams = ngrams(tokens, n)
    if not grams:
        return 0.0
    return 100.0 * (1.0 - len(set(grams)) / len(grams))


def diversity(tokens: Sequence[Hashable], orders: Sequence[int] = REP_ORDERS) -> float:
    """Π over `orders` of (1 − rep-n / 100)."""
    return math.prod(1.0 - rep_n(tokens, n) / 100.0 for n in orders)


def distinct_n(tokens: Sequence[Hashable], n: int) -> float:
    """unique/total n-grams of one sequence; 0.0 when there is no n-gram."""
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else 0.0


def corpus_distinct(sequences: Sequence[Sequence[Hashable]], n: int) -> float:
    """distinct-n with the n-grams of all `sequences` pooled (the usual corpus-level number)."""
    grams = [g for tokens in sequences for g in ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def text_metrics(tokens: Sequence[Hashable]) -> dict[str, float | int]:
    """The cheap metrics of one generation: rep-2/3/4, diversity, distinct-1/2, length."""
    out: dict[str, float | int] = {f"rep_{n}": rep_n(tokens, n) for n in REP_ORDERS}
    out["diversity"] = diversity(tokens)
    out.update({f"distinct_{n}": distinct_n(tokens, n) for n in DISTINCT_ORDERS})
    out["length"] = len(tokens)
    return out


@torch.inference_mode()
def coherence(
    scorer: ModelRunner,
    prompt_ids: Sequence[int],  # [n_prompt]
    continuation: Sequence[int],  # [n_new]
) -> float | None:
    """Mean log p(x_t | x_<t) over the continuation under `scorer`, in nats per token. One forward
    over prompt + continuation; it resets the scorer's KV cache. None for an empty continuation."""
    if not continuation or not prompt_ids:
        return None
    ids = torch.tensor([[*prompt_ids, *continuation]])
    logits = scorer.prefill(ids, all_logits=True).logits[0]  # [n_prompt + n_new, vocab]
    start = len(prompt_ids) - 1  # the logits that predict the first continuation token
    predicted = logits[start : start + len(continuation)].log_softmax(-1)  # [n_new, vocab]
    targets = torch.tensor(list(continuation), device=predicted.device)
    scorer.reset()
    return predicted.gather(-1, targets[:, None]).mean().item()


def check_scorer(target: ModelRunner, scorer: ModelRunner) -> None:
    """Coherence scores the target's token ids, so the scorer must share its tokenizer."""
    if target.tokenizer is not None and scorer.tokenizer is not None:
        same = target.tokenizer.get_vocab() == scorer.tokenizer.get_vocab()
    else:
        same = target.vocab_size == scorer.vocab_size
    if not same:
        raise ConfigError(
            f"--scorer: '{scorer.name}' does not share the tokenizer of '{target.name}'; "
            "coherence is scored on token ids, so pick a model of the same family"
        )


def first_divergence(tokens: Sequence[int], reference: Sequence[int]) -> int | None:
    """The first index where `tokens` and `reference` differ (a length mismatch counts at the
    shorter length); None when they are identical."""
    for i, (a, b) in enumerate(zip(tokens, reference, strict=False)):
        if a != b:
            return i
    return None if len(tokens) == len(reference) else min(len(tokens), len(reference))


def agreement(tokens: Sequence[int], reference: Sequence[int]) -> dict[str, Any]:
    """Agreement of a generation with the greedy one on the same prompt: first divergence index
    and the fraction of positions (over the longer of the two) that hold the same token."""
    longest = max(len(tokens), len(reference))
    same = sum(a == b for a, b in zip(tokens, reference, strict=False))
    return {
        "first_divergence": first_divergence(tokens, reference),
        "match_fraction": same / longest if longest else 1.0,
    }


def normalize_answer(text: str) -> str:
    """The first non-empty line, lower case, whitespace collapsed, wrapping quotes and asterisks
    and trailing punctuation removed."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.lower().split())
    return line.strip("*\"'`").rstrip(".!?;:").strip("*\"'` ")


def exact_answer(text: str, references: str | Sequence[str]) -> float:
    """1.0 when the output's normalised first line is, or holds as a whole phrase, one of the
    references (normalised the same way); else 0.0."""
    refs = [references] if isinstance(references, str) else list(references)
    line = normalize_answer(text)
    for ref in (normalize_answer(r) for r in refs):
        if ref and (line == ref or re.search(rf"(?<!\w){re.escape(ref)}(?!\w)", line)):
            return 1.0
    return 0.0


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every numeric metric over the generations of one method (None values skipped),
    plus the share of generations identical to greedy when agreement was measured."""
    out: dict[str, Any] = {}
    keys = sorted({key for record in records for key in record})
    for key in keys:
        values = [r[key] for r in records if isinstance(r.get(key), int | float)]
        values = [v for v in values if not isinstance(v, bool)]
        if values:
            out[key] = sum(values) / len(values)
    divergences = [r["first_divergence"] for r in records if "match_fraction" in r]
    if divergences:
        out["identical_to_greedy"] = sum(d is None for d in divergences) / len(divergences)
        out.pop("first_divergence", None)
    return out


def quality_report(
    token_ids: Sequence[int],
    prompt_ids: Sequence[int] | None = None,
    scorer: ModelRunner | None = None,
    greedy_ids: Sequence[int] | None = None,
    text: str | None = None,
    answer: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything measurable for one generation: the text metrics always; coherence when a
    scorer (and the prompt) is given; agreement when greedy's tokens are given; exact_answer
    when the output `text` and its reference `answer` are given."""
    report: dict[str, Any] = text_metrics(token_ids)
    if text is not None and answer is not None:
        report["exact_answer"] = exact_answer(text, answer)
    if scorer is not None and prompt_ids is not None:
        report["coherence"] = coherence(scorer, prompt_ids, token_ids)
    if greedy_ids is not None:
        report.update(agreement(token_ids, greedy_ids))
    return report

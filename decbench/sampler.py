"""Logit processing shared by every decoder: repetition penalty, a constraint's mask, then
temperature, top-k, top-p, min-p and typical-p, in transformers' order. Speculative sampling
applies the very same warping to the target and to the draft, which is what keeps it lossless.

This is where logits become tokens, so it is where a constraint (decbench/constraints) applies:
`allowed` ([n, vocab] bool) sets the logits of disallowed tokens to -inf before any warper, so
greedy takes the argmax of the constrained target and sampling draws from the masked,
renormalised target (the warpers then act on what the constraint allows)."""

from __future__ import annotations

import torch

from decbench.settings import SamplingSettings


def penalize(logits: torch.Tensor, contexts: list[list[int]], penalty: float) -> torch.Tensor:
    """CTRL repetition penalty: logits of tokens already in row i's context are divided (if
    positive) or multiplied (if negative) by `penalty`. logits: [n, vocab]."""
    if penalty == 1.0:
        return logits
    logits = logits.clone()
    for row, context in enumerate(contexts):
        if not context:
            continue
        seen = torch.tensor(sorted(set(context)), device=logits.device)
        values = logits[row, seen]
        logits[row, seen] = torch.where(values > 0, values / penalty, values * penalty)
    return logits


def warp(logits: torch.Tensor, s: SamplingSettings) -> torch.Tensor:
    """Temperature and truncation warpers on [n, vocab] logits; removed entries become -inf."""
    logits = logits / s.temperature
    neg_inf = torch.finfo(logits.dtype).min
    if s.top_k > 0 and s.top_k < logits.shape[-1]:
        kth = torch.topk(logits, s.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, neg_inf)
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative <= (1 - s.top_p)
        drop_sorted[..., -1] = False  # always keep the most likely token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, neg_inf)
    if s.min_p > 0.0:
        probs = logits.softmax(-1)
        floor = s.min_p * probs.max(-1, keepdim=True).values
        logits = logits.masked_fill(probs < floor, neg_inf)
    if s.typical_p < 1.0:
        logits = _typical(logits, s.typical_p, neg_inf)
    return logits


def _typical(logits: torch.Tensor, mass: float, neg_inf: float) -> torch.Tensor:
    """Locally typical sampling (Meister et al. 2023): keep the tokens whose surprisal is closest
    to the entropy until their mass reaches `mass`."""
    log_probs = logits.log_softmax(-1)
    probs = log_probs.exp()
    entropy = -(torch.nan_to_num(log_probs) * probs).sum(-1, keepdim=True)
    shifted = (-log_probs - entropy).abs()
    sorted_shift, order = torch.sort(shifted, dim=-1)
    cumulative = probs.gather(-1, order).cumsum(-1)
    last = (cumulative < mass).sum(-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    drop_sorted = sorted_shift > sorted_shift.gather(-1, last)
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, neg_inf)


def constrain(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """logits [n, vocab] with the tokens outside `allowed` ([n, vocab] bool, or None = all)
    set to -inf."""
    if allowed is None:
        return logits
    return logits.masked_fill(~allowed.to(logits.device), float("-inf"))


def target_distribution(
    logits: torch.Tensor,
    s: SamplingSettings,
    contexts: list[list[int]],
    allowed: torch.Tensor | None = None,  # [n, vocab] bool: a constraint's masks
) -> torch.Tensor:
    """Final next-token probabilities [n, vocab] for rows with the given contexts (temperature > 0)."""
    penalized = penalize(logits.float(), contexts, s.repetition_penalty)
    return warp(constrain(penalized, allowed), s).softmax(-1)


def greedy_tokens(
    logits: torch.Tensor,
    s: SamplingSettings,
    contexts: list[list[int]],
    allowed: torch.Tensor | None = None,  # [n, vocab] bool: a constraint's masks
) -> list[int]:
    """argmax per row after the repetition penalty (the only processor greedy honours) and the
    constraint's mask."""
    return constrain(penalize(logits, contexts, s.repetition_penalty), allowed).argmax(-1).tolist()


def choose(
    logits: torch.Tensor,  # [n, vocab]
    s: SamplingSettings,
    contexts: list[list[int]],
    generator: torch.Generator | None,
    allowed: torch.Tensor | None = None,  # [n, vocab] bool: a constraint's masks
) -> list[int]:
    """The next token for each row: argmax when greedy, else a draw from the warped distribution."""
    if s.greedy:
        return greedy_tokens(logits, s, contexts, allowed)
    probs = target_distribution(logits, s, contexts, allowed)
    return draw(probs, generator).squeeze(-1).tolist()


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of `probs` ([..., vocab]) -> [..., 1]. decbench's generators live on
    the CPU (make_generator), so a seed gives the same stream on every device; probabilities
    from a GPU come to the generator's device for the draw."""
    if generator is not None and probs.device != generator.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator)


def make_generator(s: SamplingSettings, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(s.seed)
    return generator

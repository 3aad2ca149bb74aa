"""The training objective of the AR-to-dLLM adaptation and its recipe options.

- Masked diffusion loss (Nie et al., "Large Language Diffusion Models" (LLaDA), 2025): draw a
  masking ratio t ~ U(min_t, 1) per example, mask each answer token with probability t, and take
  the cross-entropy on the masked tokens weighted by 1/t, normalised by the answer length. The
  prompt is never masked (LLaDA's supervised fine-tuning). The logits of position i - 1 predict
  token i (`shift`), as in AR-initialised dLLMs (Dream; DiffuLLaMA).
- Attention mask annealing (Gong et al., "Scaling Diffusion Language Models via Adaptation from
  Autoregressive Models" (DiffuLLaMA), ICLR 2025): training starts from the causal mask the AR
  weights were trained under and opens it to full bidirectional attention over the first
  `anneal` fraction of the steps. Here each future (above-diagonal) entry is opened with
  probability equal to the annealing progress, drawn per example and step.
- Complementary masking (Li et al., "LaViDa: A Large Diffusion Language Model for Multimodal
  Understanding", 2025): each example is used twice in a batch, with a mask and its complement
  (ratios t and 1 - t), so every answer token is a prediction target exactly once per pair and
  no token of a drawn example goes untrained.
"""

from __future__ import annotations

import torch


def collate(examples: list, pad: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-pad prompts: ids [batch, P + A], real [batch, P + A] bool, P."""
    width = max(len(e.prompt) for e in examples)
    ids, real = [], []
    for e in examples:
        gap = width - len(e.prompt)
        ids.append([pad] * gap + e.prompt + e.answer)
        real.append([False] * gap + [True] * (len(e.prompt) + len(e.answer)))
    return torch.tensor(ids), torch.tensor(real), width


def draw_masks(
    batch: int, length: int, generator: torch.Generator, min_t: float, complementary: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked [batch, length] bool, t [batch, 1]). With `complementary`, rows batch/2.. are the
    complements of rows 0..batch/2 (batch must be even) with ratio 1 - t."""
    first = batch // 2 if complementary else batch
    t = min_t + (1 - min_t) * torch.rand(first, 1, generator=generator)  # [first, 1]
    masked = torch.rand(first, length, generator=generator) < t  # [first, length]
    if complementary:
        masked = torch.cat([masked, ~masked])
        t = torch.cat([t, (1 - t).clamp(min=min_t)])
    empty = ~masked.any(dim=1)  # at least one masked token per row
    masked[empty, 0] = True
    return masked, t


def attention_bias(
    real: torch.Tensor,  # [batch, n] bool: not padding
    opened: float,  # share of future entries opened (1 = bidirectional, 0 = causal)
    generator: torch.Generator,
) -> torch.Tensor:
    """Additive 4D attention mask [batch, 1, n, n]: padding hidden; the causal part always
    visible; each future entry visible with probability `opened`."""
    batch, n = real.shape
    visible = real[:, None, None, :].expand(batch, 1, n, n).clone()
    if opened < 1.0:
        future = torch.ones(n, n, dtype=torch.bool).triu(1)  # [n, n] j > i
        closed = future & (torch.rand(batch, 1, n, n, generator=generator) >= opened)
        visible &= ~closed
    bias = torch.zeros(batch, 1, n, n)
    return bias.masked_fill_(~visible, torch.finfo(bias.dtype).min)


def masked_diffusion_loss(
    model,
    examples: list,
    mask_id: int,
    generator: torch.Generator,
    min_t: float = 0.05,
    opened: float = 1.0,
    complementary: bool = False,
) -> torch.Tensor:
    """The LLaDA loss of one batch (see the module docstring). With `complementary` the batch is
    the examples twice, with complementary masks."""
    if complementary:
        examples = list(examples) + list(examples)
    ids, real, start = collate(examples, pad=mask_id)
    batch, length = ids.shape
    answer = ids[:, start:]  # [batch, A] clean answer tokens
    masked, t = draw_masks(batch, answer.shape[1], generator, min_t, complementary)
    noisy = ids.clone()
    noisy[:, start:] = torch.where(masked, torch.full_like(answer, mask_id), answer)
    attend = attention_bias(real, opened, generator)
    positions = (real.long().cumsum(dim=1) - 1).clamp(min=0)
    device = next(model.parameters()).device
    hidden = model.model(
        input_ids=noisy.to(device),
        attention_mask=attend.to(device, model.dtype),
        position_ids=positions.to(device),
    )
    hidden = hidden.last_hidden_state[:, start - 1 : length - 1]  # shift: i-1 predicts i
    masked_d = masked.to(device)
    logits = model.lm_head(hidden[masked_d])  # [n_masked, vocab]
    target = answer.to(device)[masked_d]
    ce = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none")
    weight = (1.0 / t).expand_as(masked)[masked].to(device)
    return (ce * weight).sum() / (batch * answer.shape[1])


def annealed(step: int, steps: int, anneal: float) -> float:
    """Share of future attention opened at `step`: linear from 0 to 1 over the first `anneal`
    fraction of `steps`; 1 (bidirectional) throughout when anneal is 0."""
    span = anneal * steps
    return 1.0 if span <= 0 else min(1.0, step / span)

"""Logit warpers on hand-made distributions."""

from __future__ import annotations

import torch

from decbench.sampler import penalize, target_distribution, warp
from decbench.settings import SamplingSettings

LOGITS = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]]))


def kept(s: SamplingSettings) -> list[int]:
    probs = warp(LOGITS, s).softmax(-1)[0]
    return [i for i, p in enumerate(probs.tolist()) if p > 1e-9]


def test_top_k_keeps_k():
    assert kept(SamplingSettings(temperature=1.0, top_k=2)) == [0, 1]


def test_top_p_keeps_smallest_set_reaching_p():
    assert kept(SamplingSettings(temperature=1.0, top_p=0.7)) == [0, 1]
    assert kept(SamplingSettings(temperature=1.0, top_p=0.8)) == [0, 1, 2]


def test_min_p_scales_with_the_top_token():
    # floor = 0.3 * 0.5 = 0.15: keeps 0.5, 0.25, 0.15
    assert kept(SamplingSettings(temperature=1.0, min_p=0.3)) == [0, 1, 2]


def test_typical_p_keeps_tokens_near_the_entropy():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    entropy = -(probs * probs.log()).sum()
    distance = ((-probs.log()) - entropy).abs()
    order = distance.argsort().tolist()
    result = kept(SamplingSettings(temperature=1.0, typical_p=0.5))
    assert result == sorted(order[: len(result)])  # the kept set is a prefix of the typical order
    assert 0 < len(result) < 5


def test_temperature_sharpens():
    cold = target_distribution(LOGITS, SamplingSettings(temperature=0.5), [])
    assert cold[0, 0] > 0.5


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    out = penalize(logits, [[0, 1]], 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5]]

"""RSD: recursive rejection sampling against brute-force enumeration of every draw without
replacement, the Gumbel-top-k draw, the budget, and greedy token-exactness of the decoder."""

from __future__ import annotations

import itertools

import pytest
import torch

from decbench.decoders.speculative.engine import run_speculative
from decbench.decoders.speculative.proposer import ProposerContext
from decbench.decoders.speculative.rsd import (
    RSDOptions,
    RSDProposer,
    gumbel_top,
    rrs_step,
    rsd_rule,
)
from decbench.settings import SamplingSettings
from tests.conftest import (
    greedy_ids,
    make_request,
    repetitive_prompts,
    runner_for,
    tiny_llama,
    tiny_qwen2,
)
from tests.test_spectr import random_pair


def rrs_output(p, q, m, step=rrs_step) -> torch.Tensor:
    """Exact output law of recursive rejection sampling over every ordered draw of m distinct
    tokens from q without replacement."""
    out = torch.zeros_like(p, dtype=torch.float64)
    support = [x for x in range(len(q)) if q[x] > 0]
    for draws in itertools.permutations(support, min(m, len(support))):
        weight, left = 1.0, q.double().clone()
        for x in draws:  # probability of this ordered draw without replacement
            weight *= (left[x] / left.sum()).item()
            left[x] = 0.0
        p_i, q_i, alive = p, q, weight
        for x in draws:
            chance, p_next, q_next = step(p_i, q_i, x)
            out[x] += alive * chance
            alive *= 1 - chance
            p_i, q_i = p_next, q_next
        out += alive * p_i.double()
    return out


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", range(6))
def test_recursive_rejection_output_is_exactly_p(m, seed):
    p, q = random_pair(seed, vocab=5)
    assert torch.allclose(rrs_output(p, q, m), p.double(), atol=1e-6)


def with_replacement_step(p, q, token):
    """A broken twin: treats later children as fresh draws from q (q not renormalised)."""
    chance, p_next, _ = rrs_step(p, q, token)
    return chance, p_next, q


def test_broken_recursive_rejection_is_detected():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0])
    q = torch.tensor([0.4, 0.3, 0.2, 0.05, 0.05])
    error = (rrs_output(p, q, 3, with_replacement_step) - p.double()).abs().max()
    assert error > 0.01


def test_gumbel_top_samples_without_replacement():
    """The first Gumbel-top-2 pick follows q; the pair is distinct; no -inf token is drawn."""
    q = torch.tensor([0.5, 0.3, 0.2, 0.0])
    g = torch.Generator().manual_seed(0)
    firsts = torch.zeros(4)
    for _ in range(4000):
        picks = gumbel_top(q.log(), 3, g)
        assert len(set(picks)) == 3 and 3 not in picks
        firsts[picks[0]] += 1
    assert torch.allclose(firsts / 4000, q, atol=0.03)


def test_budget_keeps_a_breadth_first_prefix():
    target = runner_for(tiny_llama(seed=1, layers=1))
    options = RSDOptions(branches=[3, 2, 2], budget=5)
    proposer = RSDProposer(target, options)
    settings = SamplingSettings(temperature=1.0)
    ctx = ProposerContext([3, 4, 5], 3, 8, settings, torch.Generator().manual_seed(0))
    draft = proposer.propose(ctx)
    assert draft.parents == [-1, -1, -1, 0, 0]  # 3 children of the root, then 2 of the first
    assert len(set(draft.tokens[:3])) == 3


@pytest.mark.parametrize("branches", [[1], [2, 2], [3, 1, 1], [2, 2, 2, 1]])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_rsd_equals_greedy(family, branches):
    make = tiny_qwen2 if family == "qwen2" else tiny_llama
    target, draft = runner_for(make(seed=0, layers=2)), runner_for(make(seed=1, layers=1))
    for prompt in repetitive_prompts(3):
        options = RSDOptions(branches=branches, budget=5)
        proposer = RSDProposer(draft, options)
        request = make_request(prompt, 20)
        result = run_speculative(
            "rsd", options, target, proposer, request, tree_rule=rsd_rule(proposer)
        )
        assert result.token_ids == greedy_ids(target, prompt, 20)

"""SpecTr: K-SEQ against brute-force enumeration, and greedy token-exactness of the decoder."""

from __future__ import annotations

import itertools

import pytest
import torch

from decbench.decoders.speculative.engine import run_speculative
from decbench.decoders.speculative.spectr import (
    SpecTrOptions,
    SpecTrProposer,
    kseq_plan,
    spectr_rule,
)
from tests.conftest import (
    greedy_ids,
    make_request,
    repetitive_prompts,
    runner_for,
    tiny_llama,
    tiny_qwen2,
)


def kseq_output(p, q, k, plan=kseq_plan) -> torch.Tensor:
    """The exact distribution of K-SEQ's output: sum over every tuple of k draws from q."""
    accept, residual = plan(p, q, k)
    out = torch.zeros_like(p, dtype=torch.float64)
    for draws in itertools.product(range(len(p)), repeat=k):
        weight = torch.prod(q[list(draws)].double())
        rejected = 1.0
        for x in draws:
            out[x] += weight * rejected * accept[x].double()
            rejected *= 1 - accept[x].double()
        out += weight * rejected * residual.double()
    return out


def random_pair(seed: int, vocab: int):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(vocab, generator=g) ** 3
    q = torch.rand(vocab, generator=g) ** 3
    q[seed % vocab] = 0.0  # a token the draft never proposes
    return p / p.sum(), q / q.sum()


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", range(6))
def test_kseq_output_is_exactly_p(k, seed):
    p, q = random_pair(seed, vocab=4)
    assert torch.allclose(kseq_output(p, q, k), p.double(), atol=1e-6)


def test_kseq_accepts_more_with_more_draws():
    """The point of SpecTr: P(some draw accepted) grows with k (1 - residual mass)."""
    p, q = random_pair(1, vocab=4)
    rejected = []
    for k in (1, 2, 4):
        accept, _ = kseq_plan(p, q, k)
        rejected.append(float(sum(q[x] * (1 - accept[x]) for x in range(4)) ** k))
    assert rejected[0] > rejected[1] > rejected[2]


def broken_plan(p, q, k):
    """A twin that forgets the k draws: residual of single-draft speculative sampling."""
    accept, _ = kseq_plan(p, q, k)
    residual = (p - torch.minimum(p, q)).clamp_min(0)
    return accept, residual / residual.sum()


def test_broken_kseq_is_detected():
    p, q = random_pair(2, vocab=4)
    assert not torch.allclose(kseq_output(p, q, 3, broken_plan), p.double(), atol=1e-3)


@pytest.mark.parametrize("k,depth", [(1, 1), (2, 3), (4, 2), (3, 5)])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_spectr_equals_greedy(family, k, depth):
    make = tiny_qwen2 if family == "qwen2" else tiny_llama
    target, draft = runner_for(make(seed=0, layers=2)), runner_for(make(seed=1, layers=1))
    for prompt in repetitive_prompts(3):
        options = SpecTrOptions(k=k, depth=depth)
        proposer = SpecTrProposer(draft, options)
        result = run_speculative(
            "spectr",
            options,
            target,
            proposer,
            make_request(prompt, 20),
            tree_rule=spectr_rule(proposer),
        )
        assert result.token_ids == greedy_ids(target, prompt, 20)

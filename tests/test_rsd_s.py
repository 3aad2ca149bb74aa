"""RSD-S: the stochastic beam search against brute-force enumeration of sequences drawn without
replacement, its broken twin, the budget, and greedy token-exactness of the decoder."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from decbench.decoders.speculative import tree
from decbench.decoders.speculative.engine import run_speculative
from decbench.decoders.speculative.proposer import ProposerContext
from decbench.decoders.speculative.rsd import rsd_rule
from decbench.decoders.speculative.rsd_s import (
    Beam,
    RSDSOptions,
    RSDSProposer,
    beam_step,
    truncated_gumbels,
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

# A two-step sequence model on 3 tokens: q(s0) * q(s1 | s0); token 2 never follows token 0.
ROOT_Q = torch.tensor([0.5, 0.3, 0.2])
NEXT_Q = torch.tensor([[0.7, 0.3, 0.0], [0.1, 0.1, 0.8], [0.4, 0.4, 0.2]])
SEQUENCES = [(a, b) for a in range(3) for b in range(3) if NEXT_Q[a, b] > 0]
SEQ_Q = {s: (ROOT_Q[s[0]] * NEXT_Q[s[0], s[1]]).item() for s in SEQUENCES}


def exact_ordered_law(k: int) -> dict[tuple, float]:
    """P(the k sequences come out in this order) when drawn without replacement from SEQ_Q."""
    law = {}
    for draws in itertools.permutations(SEQUENCES, k):
        weight, left = 1.0, 1.0
        for s in draws:
            weight *= SEQ_Q[s] / left
            left -= SEQ_Q[s]
        law[draws] = weight
    return law


def sampled_beam(k: int, generator: torch.Generator, truncate=truncated_gumbels) -> tuple:
    """The depth-2 beam of a stochastic beam search on the toy model, largest G first."""
    first = beam_step([Beam(tree.ROOT, 0.0, 0.0)], ROOT_Q.log()[None], k, generator, truncate)
    beams = [child for _, _, child in first]
    log_q = torch.stack([NEXT_Q[token].log() for _, token, _ in first])
    second = beam_step(beams, log_q, k, generator, truncate)
    return tuple((first[parent][1], token) for parent, token, _ in second)


def beam_pvalue(k: int, truncate, samples: int = 6000) -> float:
    law = exact_ordered_law(k)
    index = {draws: i for i, draws in enumerate(law)}
    counts = torch.zeros(len(law))
    generator = torch.Generator().manual_seed(0)
    for _ in range(samples):
        counts[index[sampled_beam(k, generator, truncate)]] += 1
    expected = torch.tensor(list(law.values()), dtype=torch.float64) * samples
    keep = expected >= 5  # pool rare cells so the chi-square approximation holds
    obs, exp = counts[keep], expected[keep]
    if not keep.all():
        obs = torch.cat([obs, counts[~keep].sum()[None]])
        exp = torch.cat([exp, expected[~keep].sum()[None]])
    obs, exp = obs.numpy(), exp.numpy()
    return float(chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_stochastic_beam_draws_sequences_without_replacement(k):
    """Kool et al.'s theorem: the final beam, in order of G, is a draw of k whole sequences
    without replacement from the draft's sequence law (checked on every ordered k-tuple)."""
    assert beam_pvalue(k, truncated_gumbels) > 1e-3


def test_beam_without_truncation_is_detected():
    """A broken twin: fresh Gumbels per child, not conditioned on the parent's G."""
    assert beam_pvalue(2, lambda bound, perturbed: perturbed) < 1e-6


def test_truncated_gumbels_have_the_bound_as_maximum():
    g = torch.tensor([0.3, -1.0, 2.5, float("-inf")], dtype=torch.float64)
    out = truncated_gumbels(1.0, g)
    assert out.max().item() == pytest.approx(1.0) and out.argmax().item() == 2
    assert out[3].item() == -math.inf and torch.all(out[:2] < 1.0)


def test_greedy_beam_step_is_a_beam_search():
    """No generator: the width best children by cumulative log-probability, best first."""
    beams = [Beam(0, math.log(0.6), 0.0), Beam(1, math.log(0.4), 0.0)]
    log_q = torch.tensor([[0.7, 0.3, 0.0], [0.9, 0.1, 0.0]]).log()  # 0.42 0.18 | 0.36 0.04
    chosen = beam_step(beams, log_q, 3, None)
    assert [(parent, token) for parent, token, _ in chosen] == [(0, 0), (1, 0), (0, 1)]


def test_tree_keeps_every_level_and_the_budget():
    target = runner_for(tiny_llama(seed=1, layers=1))
    settings = SamplingSettings(temperature=1.0)
    for budget, sizes in ((0, [3, 3, 3]), (7, [3, 3, 1])):
        proposer = RSDSProposer(target, RSDSOptions(beam=3, depth=3, budget=budget))
        ctx = ProposerContext([3, 4, 5], 3, 8, settings, torch.Generator().manual_seed(0))
        draft = proposer.propose(ctx)
        depths = tree.depths(draft.parents)
        assert [depths.count(d) for d in (1, 2, 3)] == sizes
        for parent, children in proposer.last.tries.items():  # tried in draw order
            assert children == sorted(children)
            assert all(draft.parents[c] == parent for c in children)
            assert parent in proposer.last.q


@pytest.mark.parametrize("beam,depth", [(1, 1), (2, 3), (3, 2), (4, 4)])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_rsd_s_equals_greedy(family, beam, depth):
    make = tiny_qwen2 if family == "qwen2" else tiny_llama
    target, draft = runner_for(make(seed=0, layers=2)), runner_for(make(seed=1, layers=1))
    for prompt in repetitive_prompts(3):
        options = RSDSOptions(beam=beam, depth=depth, budget=6)
        proposer = RSDSProposer(draft, options)
        request = make_request(prompt, 20)
        result = run_speculative(
            "rsd-s", options, target, proposer, request, tree_rule=rsd_rule(proposer)
        )
        assert result.token_ids == greedy_ids(target, prompt, 20)

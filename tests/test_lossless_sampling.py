"""Speculative sampling preserves the target's distribution (Leviathan et al. 2023, Thm 1).

With a 5-token vocabulary and peaked random models, we run many seeded generations of 4 tokens
and compare the empirical joint distribution of tokens 2..4 (produced by one speculative step:
accepted drafts, a recovered token or a bonus token) with the exact distribution computed by
enumerating every prefix under the target. A chi-square test must pass for the real rule and
fail for a deliberately broken one (recovered tokens drawn from p instead of the residual).

That every registered lossless method passes the check is tested over the registry
(tests/test_conformance.py); this file keeps the broken twins, which show the check can fail
for each way of drafting, and DEL, which needs its exit layer forced to draft.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.stats import chisquare

from decbench.backends.derive import truncated_runner
from decbench.decoders.speculative import engine
from decbench.decoders.speculative.acceptance import Verdict, rejection_sampling
from decbench.decoders.speculative.draft_model import DraftModelOptions, DraftModelProposer
from decbench.sampler import target_distribution
from decbench.settings import SamplingSettings
from tests.conftest import make_request, runner_for, tiny_llama

VOCAB = 5
PROMPT = [2, 3, 4, 2, 3]
SAMPLES = 4000
SETTINGS = SamplingSettings(temperature=0.9, top_k=4)


def peaked(seed: int):
    model = tiny_llama(seed=seed, vocab=VOCAB, layers=1)
    with torch.no_grad():
        model.lm_head.weight.mul_(
            12.0
        )  # random tiny models are near-uniform; make them opinionated
    model.generation_config.eos_token_id = None
    return runner_for(model)


def broken_rule(draft_tokens, draft_probs, target_probs, generator) -> Verdict:
    """The classic bug: after a rejection, resample from p rather than from max(0, p - q)."""
    for i, token in enumerate(draft_tokens):
        q = 1.0 if draft_probs is None else draft_probs[i, token].item()
        if torch.rand((), generator=generator).item() < min(1.0, target_probs[i, token].item() / q):
            continue
        return Verdict(i, int(torch.multinomial(target_probs[i], 1, generator=generator)), True)
    bonus = torch.multinomial(target_probs[len(draft_tokens)], 1, generator=generator)
    return Verdict(len(draft_tokens), int(bonus), False)


def exact_joint(target) -> torch.Tensor:
    """P(t2, t3, t4) under the target with SETTINGS, summing over t1. [VOCAB^3]"""
    seqs = list(itertools.product(range(VOCAB), repeat=3))  # (t1, t2, t3)
    ids = torch.tensor([PROMPT + list(s) for s in seqs])
    with torch.inference_mode():
        logits = target.model(ids).logits.float()
    n = len(PROMPT)
    probs = [target_distribution(logits[:, n - 1 + j], SETTINGS, []) for j in range(4)]
    joint = torch.zeros(VOCAB, VOCAB, VOCAB)
    for row, (t1, t2, t3) in enumerate(seqs):
        p_prefix = probs[0][row, t1] * probs[1][row, t2] * probs[2][row, t3]
        joint[t2, t3] += p_prefix * probs[3][row]
    # each (t1, t2, t3) prefix is counted once per t1: joint[t2, t3, t4] sums over t1 as wanted
    return joint.flatten()


def empirical_joint(target, make_proposer, rule) -> torch.Tensor:
    counts = torch.zeros(VOCAB**3)
    for seed in range(SAMPLES):
        settings = SamplingSettings(**{**SETTINGS.__dict__, "seed": seed})
        request = make_request(PROMPT, max_new_tokens=4, sampling=settings)
        result = engine.run_speculative(
            "t", DraftModelOptions(), target, make_proposer(), request, rule
        )
        t2, t3, t4 = result.token_ids[1:4]
        counts[t2 * VOCAB * VOCAB + t3 * VOCAB + t4] += 1
    return counts


def chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    keep = expected >= 5  # pool rare cells so the chi-square approximation holds
    obs = torch.cat([counts[keep], counts[~keep].sum()[None]])
    exp = torch.cat([expected[keep], expected[~keep].sum()[None]])
    return float(chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue)


@pytest.fixture(scope="module")
def models():
    target, draft = peaked(0), peaked(5)
    return target, draft, exact_joint(target)


def draft_proposer(draft):
    return lambda: DraftModelProposer(draft, DraftModelOptions(k=3))


def test_draft_and_target_really_differ(models):
    target, draft, _ = models
    ids = torch.tensor([PROMPT])
    with torch.inference_mode():
        p = target.model(ids).logits[0, -1].softmax(-1)
        q = draft.model(ids).logits[0, -1].softmax(-1)
    assert (p - q).abs().sum() > 0.5  # otherwise the test would pass vacuously


def test_broken_rule_is_detected(models):
    target, draft, exact = models
    counts = empirical_joint(target, draft_proposer(draft), broken_rule)
    assert chi2_pvalue(counts, exact) < 1e-6


# -- multi-draft tree methods (SpecTr, RSD): their tree rule is bound to their proposer --------
def tree_joint(target, make_proposer, make_rule) -> torch.Tensor:
    counts = torch.zeros(VOCAB**3)
    for seed in range(SAMPLES):
        settings = SamplingSettings(**{**SETTINGS.__dict__, "seed": seed})
        request = make_request(PROMPT, max_new_tokens=4, sampling=settings)
        proposer = make_proposer()
        result = engine.run_speculative(
            "t", DraftModelOptions(), target, proposer, request, tree_rule=make_rule(proposer)
        )
        t2, t3, t4 = result.token_ids[1:4]
        counts[t2 * VOCAB * VOCAB + t3 * VOCAB + t4] += 1
    return counts


def spectr_proposer(draft):
    from decbench.decoders.speculative.spectr import SpecTrOptions, SpecTrProposer

    return lambda: SpecTrProposer(draft, SpecTrOptions(k=3, depth=2))


def test_broken_spectr_is_detected(models):
    from decbench.decoders.speculative.spectr import kseq_select, spectr_rule

    def broken_select(p, q, tokens, generator):  # the residual of a single draft, not of k
        chosen, _ = kseq_select(p, q, tokens, generator)
        residual = (p - torch.minimum(p, q)).clamp_min(0)
        return chosen, residual / residual.sum()

    target, draft, exact = models
    counts = tree_joint(target, spectr_proposer(draft), lambda s: spectr_rule(s, broken_select))
    assert chi2_pvalue(counts, exact) < 1e-6


def rsd_proposer(draft):
    from decbench.decoders.speculative.rsd import RSDOptions, RSDProposer

    return lambda: RSDProposer(draft, RSDOptions(branches=[3, 2], budget=6))


def test_broken_rsd_is_detected(models):
    from decbench.decoders.speculative.rsd import rrs_step, rsd_rule

    def broken_step(p, q, token):  # recovers from p itself instead of max(0, p - q)
        chance, _, q_next = rrs_step(p, q, token)
        return chance, p, q_next

    target, draft, exact = models
    counts = tree_joint(target, rsd_proposer(draft), lambda s: rsd_rule(s, broken_step))
    assert chi2_pvalue(counts, exact) < 1e-6


def rsd_s_proposer(draft, broken: bool = False):
    from decbench.decoders.speculative.rsd_s import RSDSOptions, RSDSProposer

    class Reversed(RSDSProposer):  # the broken twin: siblings tried smallest G first
        def propose(self, ctx):
            draft = super().propose(ctx)
            self.last.tries = {node: tries[::-1] for node, tries in self.last.tries.items()}
            return draft

    cls = Reversed if broken else RSDSProposer
    return lambda: cls(draft, RSDSOptions(beam=3, depth=2, budget=5))


def test_broken_rsd_s_is_detected(models):
    """Siblings must be tried in draw order (largest perturbed score first): reversed, the first
    child tried is not a draw from q and the recursive rejection sampling is biased."""
    from decbench.decoders.speculative.rsd import rsd_rule

    target, draft, exact = models
    counts = tree_joint(target, rsd_s_proposer(draft, broken=True), rsd_rule)
    assert chi2_pvalue(counts, exact) < 1e-6


# -- DEL: self-speculation from the target's own first layers (needs a 2-layer target) ---------
@pytest.fixture(scope="module")
def two_layer_target():
    model = tiny_llama(seed=8, vocab=VOCAB, layers=2)
    with torch.no_grad():
        model.lm_head.weight.mul_(12.0)
        for weight in (model.model.layers[1].mlp.down_proj, model.model.layers[1].self_attn.o_proj):
            weight.weight.mul_(10.0)  # the last layer matters: the exit-1 draft really differs
    model.generation_config.eos_token_id = None
    target = runner_for(model)
    ids = torch.tensor([PROMPT])
    with torch.inference_mode():
        p = model(ids).logits[0, -1].softmax(-1)
        q = truncated_runner(target, 1).model(ids).logits[0, -1].softmax(-1)
    assert (p - q).abs().sum() > 0.5  # otherwise the DEL tests would pass vacuously
    return target, exact_joint(target)


def del_joint(target, rule) -> torch.Tensor:
    from decbench.decoders.speculative.dynamic_exit import DynamicExitOptions, DynamicExitProposer

    options = DynamicExitOptions(exits=[1], k_max=3, stop_below=0.2, probe_every=1)
    counts, drafted = torch.zeros(VOCAB**3), 0
    for seed in range(SAMPLES):
        settings = SamplingSettings(**{**SETTINGS.__dict__, "seed": seed})
        request = make_request(PROMPT, max_new_tokens=4, sampling=settings)
        proposer = DynamicExitProposer(target, options, [1])
        proposer.matched[1] = 0.9  # a confident start: on 2 layers the prior would not draft
        try:
            result = engine.run_speculative("t", options, target, proposer, request, rule)
        finally:
            proposer.close()
        t2, t3, t4 = result.token_ids[1:4]
        counts[t2 * VOCAB * VOCAB + t3 * VOCAB + t4] += 1
        drafted += sum(len(step.drafted) for step in result.steps)
    assert drafted > SAMPLES  # the exit layer really drafted (the test is not vacuous)
    return counts


def test_del_preserves_the_distribution(two_layer_target):
    target, exact = two_layer_target
    assert chi2_pvalue(del_joint(target, rejection_sampling), exact) > 1e-3


def test_broken_rule_under_del_is_detected(two_layer_target):
    target, exact = two_layer_target
    assert chi2_pvalue(del_joint(target, broken_rule), exact) < 1e-6

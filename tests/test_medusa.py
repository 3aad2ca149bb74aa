"""Medusa: the best-first tree, the hidden state the heads read, token identity with greedy on
tiny models (with and without a vocabulary subset), lossless sampling with exact acceptance, the
typical-acceptance rule on hand-made distributions (and that it is reported lossy), bad input,
and MAT > 1 with identical tokens on the default model with the shipped heads."""

from __future__ import annotations

import math

import pytest
import torch

from decbench.decoders.speculative import tree
from decbench.decoders.speculative.medusa import Medusa, MedusaOptions, grow_tree
from decbench.decoders.speculative.proposer import Draft, Feedback, last_row
from decbench.decoders.speculative.typical import typical_rule, typical_threshold
from decbench.drafts.medusa import MedusaHeads, load_heads, save_heads
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conftest import greedy_ids, make_request, no_models_ctx, repetitive_prompts
from tests.test_tree import sampling_matches_target


def heads_folder(tmp_path, hidden: int, n_heads: int = 3, subset=None, seed: int = 0, scale=0.5):
    torch.manual_seed(seed)
    heads = MedusaHeads(hidden, n_heads, subset)
    with torch.no_grad():
        for block in heads.blocks:
            block.weight.normal_(0.0, scale)
            block.bias.normal_(0.0, scale)
    folder = tmp_path / f"heads-{seed}-{n_heads}-{subset is not None}"
    folder.mkdir()
    save_heads(heads, folder, {"target": "tiny"}, dtype=torch.float32)
    return folder


def medusa_for(runner, folder, **options) -> Medusa:
    return Medusa(runner, MedusaOptions(heads=str(folder), **options), no_models_ctx())


# -- the tree ---------------------------------------------------------------------------------
def test_grow_tree_is_best_first_and_topological():
    probs = [[0.6, 0.3, 0.1], [0.9, 0.05, 0.05], [0.5, 0.4, 0.1]]
    tokens = [[10, 11, 12], [20, 21, 22], [30, 31, 32]]
    draft = grow_tree(probs, tokens, nodes=5)
    # scores: (0)=.6 (0,0)=.54 (1)=.3 (0,0,0)=.27 (1,0)=.27 -> five best, parents first
    assert draft.tokens == [10, 20, 11, 30, 20]
    assert draft.parents == [-1, 0, -1, 1, 2]
    assert draft.sources == ["head1", "head2", "head1", "head3", "head2"]
    tree.depths(draft.parents)  # raises unless parents come first
    for parent in set(draft.parents):  # siblings are distinct tokens
        kids = [t for t, p in zip(draft.tokens, draft.parents, strict=True) if p == parent]
        assert len(kids) == len(set(kids))


def test_grow_tree_stops_at_the_last_head():
    draft = grow_tree([[0.5, 0.5]], [[3, 4]], nodes=10)
    assert draft.tokens == [3, 4] and draft.parents == [-1, -1]


# -- which hidden state the heads read ----------------------------------------------------------
def test_last_row_is_the_row_after_the_last_accepted_token():
    chain = Feedback(drafted=4, accepted=2, tokens=[])
    assert last_row(chain) == 2
    assert last_row(Feedback(3, 2, [], path=[0, 3])) == 4
    assert last_row(Feedback(3, 0, [], path=[])) == 0


def test_heads_read_the_hidden_state_of_the_token_before_the_pending_one(
    tiny_runner, tmp_path, monkeypatch
):
    """Every hidden state the proposer keeps equals a fresh forward's at the last accepted token
    (the one whose LM head produced the pending token), whatever the tree did."""
    from decbench.decoders.speculative.medusa import MedusaProposer

    # untrained (zero) heads guess the LM head's token again, which tiny models' loops accept
    medusa = medusa_for(tiny_runner, heads_folder(tmp_path, 32, scale=0.0), top_k=4, nodes=12)
    seen: list[tuple[list[int], torch.Tensor]] = []
    accepted = 0
    real = MedusaProposer.observe

    def observe(self, feedback):
        nonlocal accepted
        real(self, feedback)
        seen.append((list(feedback.tokens), self.hidden.clone()))
        accepted += feedback.accepted

    monkeypatch.setattr(MedusaProposer, "observe", observe)
    for prompt in repetitive_prompts(3):
        medusa.generate(make_request(prompt, 32))
    assert accepted > 0  # some steps ended on an accepted node, not on the pending token
    assert len(seen) > 3
    for tokens, hidden in seen:
        out = tiny_runner.model(input_ids=torch.tensor([tokens]), output_hidden_states=True)
        assert torch.allclose(hidden, out.hidden_states[-1][0, len(tokens) - 2], atol=1e-5)


# -- lossless -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n_heads, subset, options",
    [
        (3, None, {}),
        (4, torch.arange(0, 48, 2), {"top_k": 2, "nodes": 6}),
        (2, None, {"top_k": 5, "nodes": 30}),
        (1, None, {"nodes": 1}),
    ],
)
def test_medusa_equals_greedy(tiny_runner, tmp_path, n_heads, subset, options):
    folder = heads_folder(tmp_path, 32, n_heads, subset)
    medusa = medusa_for(tiny_runner, folder, **options)
    drafted = 0
    for prompt in repetitive_prompts(6):
        result = medusa.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 24)
        drafted += result.stats["drafted"]
    assert drafted > 0


def test_medusa_stops_at_eos_and_budget(tiny_runner, tmp_path):
    medusa = medusa_for(tiny_runner, heads_folder(tmp_path, 32))
    for n in (1, 2, 5):
        result = medusa.generate(make_request([2, 3, 4], n))
        assert result.token_ids == greedy_ids(tiny_runner, [2, 3, 4], n)


def test_exact_acceptance_preserves_the_distribution(tmp_path):
    folder = heads_folder(tmp_path, 32, n_heads=3, scale=0.0)

    def decoder_for(target):
        return medusa_for(target, folder, top_k=3, nodes=8)

    sampling_matches_target(decoder_for, samples=1200)


# -- typical acceptance -------------------------------------------------------------------------
def test_typical_threshold_follows_the_entropy():
    flat = torch.full((4,), 0.25)
    sharp = torch.tensor([0.97, 0.01, 0.01, 0.01])
    assert typical_threshold(flat, 0.09, 0.3) == pytest.approx(
        min(0.09, 0.3 * math.exp(-math.log(4)))
    )
    assert typical_threshold(sharp, 0.09, 0.3) == pytest.approx(0.09)


def test_typical_rule_takes_the_longest_plausible_path():
    # root -> a(0) -> b(1) ;  root -> c(2) -> d(3) -> e(4)
    draft = Draft([0, 1, 2, 3, 4], None, [-1, 0, -1, 2, 3])
    probs = {
        0: torch.tensor([0.5, 0.0, 0.4, 0.1, 0.0]),  # root: a=.5 and c=.4 both plausible
        1: torch.tensor([0.0, 0.9, 0.0, 0.1, 0.0]),  # after a: b plausible
        2: torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]),  # after b (leaf): bonus is 4
        3: torch.tensor([0.0, 0.0, 0.0, 0.8, 0.2]),  # after c: d plausible
        4: torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]),  # after d: e plausible
        5: torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]),  # after e: bonus 0
    }
    verdict = typical_rule(0.09, 0.3)(draft, probs.__getitem__, torch.Generator().manual_seed(0))
    assert verdict.path == [2, 3, 4] and verdict.bonus == 0


def test_typical_rule_rejects_implausible_tokens():
    draft = Draft([1], None, [-1])
    probs = {0: torch.tensor([0.95, 0.05, 0.0]), 1: torch.tensor([1.0, 0.0, 0.0])}
    verdict = typical_rule(0.09, 0.3)(draft, probs.__getitem__, torch.Generator().manual_seed(0))
    assert verdict.path == [] and verdict.bonus == 0  # 0.05 < 0.09: rejected, bonus from p


def test_typical_acceptance_is_reported_lossy_and_greedy_stays_exact(tiny_runner, tmp_path):
    assert Medusa.is_lossless(MedusaOptions())
    assert not Medusa.is_lossless(MedusaOptions(acceptance="typical"))
    folder = heads_folder(tmp_path, 32)
    medusa = medusa_for(tiny_runner, folder, acceptance="typical")
    for prompt in repetitive_prompts(3):
        result = medusa.generate(make_request(prompt, 16))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 16)
    sampled = medusa.generate(
        make_request([2, 3, 4], 16, sampling=SamplingSettings(temperature=1.0, seed=1))
    )
    assert len(sampled.token_ids) == 16


# -- bad input ------------------------------------------------------------------------------------
def test_bad_options_and_heads_are_config_errors(tiny_runner, tmp_path):
    folder = heads_folder(tmp_path, 32)
    with pytest.raises(ConfigError, match="acceptance"):
        medusa_for(tiny_runner, folder, acceptance="fast")
    with pytest.raises(ConfigError, match="top_k"):
        medusa_for(tiny_runner, folder, top_k=0)
    with pytest.raises(ConfigError, match="distill --kind medusa"):
        medusa_for(tiny_runner, tmp_path)
    with pytest.raises(ConfigError, match="hidden size of 16"):
        medusa_for(tiny_runner, heads_folder(tmp_path, 16, seed=1))


def test_heads_round_trip_with_a_subset(tmp_path):
    folder = heads_folder(tmp_path, 32, 2, torch.tensor([1, 5, 9]))
    heads, record = load_heads(folder)
    assert heads.subset.tolist() == [1, 5, 9] and record["vocab_subset"] == 3
    weight = torch.randn(12, 32)
    logits = heads(torch.randn(32), heads.rows(weight))
    assert logits.shape == (2, 3)
    assert heads.token_ids(torch.tensor([0, 2])).tolist() == [1, 9]


# -- the default model --------------------------------------------------------------------------
@pytest.mark.model
def test_medusa_on_the_default_model(default_session):
    from tests.test_tree import assert_default_model_speedup

    assert_default_model_speedup(default_session, Medusa, SamplingSettings())

"""The constraint layer on tiny models: the CSR trie's masks equal a plain walk of the allow-list,
constrained outputs are always allowed, constrained speculative decoding is token-identical to
constrained greedy, and constrained speculative sampling keeps the constrained target's
distribution (with a broken twin that the test catches)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from decbench.constraints.base import ConstraintViolation
from decbench.constraints.trie import AllowList, build_trie, node_masks
from decbench.decoders.autoregressive import decode_autoregressive
from decbench.decoders.base import NoOptions
from decbench.decoders.speculative import engine
from decbench.decoders.speculative.acceptance import rejection_sampling
from decbench.decoders.speculative.draft_model import DraftModelOptions, DraftModelProposer
from decbench.decoders.speculative.lookahead import LookaheadOptions, LookaheadProposer
from decbench.decoders.speculative.prompt_lookup import PromptLookupOptions, PromptLookupProposer
from decbench.decoders.speculative.recycling import (
    AdjacencyMatrix,
    RecyclingProposer,
    build_template,
)
from decbench.errors import ConfigError
from decbench.sampler import target_distribution
from decbench.settings import SamplingSettings
from tests.conftest import TINY_VOCAB, make_request, runner_for, tiny_llama
from tests.records import sample_record

EOS = 1  # the tiny models' EOS


def random_allow_list(seed: int, n: int = 12, vocab: int = TINY_VOCAB) -> list[list[int]]:
    """Sequences that share prefixes (so the trie branches) and repeat spans (so prompt lookup
    drafts from them); EOS never occurs inside one."""
    rng = random.Random(seed)
    stem = [rng.randrange(2, vocab) for _ in range(4)]
    sequences = []
    for _ in range(n):
        cut = rng.randrange(0, len(stem) + 1)
        tail = [rng.randrange(2, vocab) for _ in range(rng.randrange(1, 6))]
        sequences.append(stem[:cut] + tail + stem[: rng.randrange(0, 4)])
    return sequences


def allowed_next(sequences: list[list[int]], prefix: list[int], vocab: int) -> torch.Tensor:
    """The mask by definition, with no trie: next tokens of the sequences extending `prefix`,
    and EOS where `prefix` itself is allowed."""
    mask = torch.zeros(vocab, dtype=torch.bool)
    for s in sequences:
        if s[: len(prefix)] == prefix and len(s) > len(prefix):
            mask[s[len(prefix)]] = True
    if prefix in sequences:
        mask[EOS] = True
    return mask


# -- the trie ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_trie_masks_equal_a_walk_of_the_allow_list(seed):
    sequences = random_allow_list(seed)
    constraint = AllowList(sequences, TINY_VOCAB, [EOS], "test")
    prefixes = {tuple(s[:i]) for s in sequences for i in range(len(s) + 1)}
    for prefix in prefixes:
        state = constraint.start()
        state.advance_all(prefix)
        assert torch.equal(state.mask(), allowed_next(sequences, list(prefix), TINY_VOCAB))
        assert state.is_complete == (list(prefix) in sequences)


def test_node_masks_builds_many_rows_in_one_scatter():
    # trie of [5 6], [5 7], [8]: root -> {5, 8}; node(5) -> {6, 7}; leaves end sequences
    trie = build_trie([[5, 6], [5, 7], [8]], vocab=10)
    assert trie.indptr.tolist() == [0, 2, 4, 4, 4, 4]  # root, 5, 8, 6, 7 (children of 5 last)
    masks = node_masks(trie, torch.arange(trie.n_nodes), torch.tensor([EOS]))
    assert masks[0].nonzero().flatten().tolist() == [5, 8]
    assert masks[1].nonzero().flatten().tolist() == [6, 7]
    assert [m.nonzero().flatten().tolist() for m in masks[2:]] == [[EOS]] * 3  # leaves: EOS only


def test_trie_state_rolls_back_forks_and_counts_allowed_drafts():
    constraint = AllowList([[5, 6, 7], [5, 6, 9, 9]], 12, [EOS], "test")
    state = constraint.start()
    assert state.allowed_prefix([5, 6, 8, 7]) == 2  # 8 leaves the list
    assert state.allowed_prefix([5, 6, 7, EOS]) == 4  # EOS right after a whole sequence
    assert state.allowed_prefix([5, 6, 7, EOS, 5]) == 4  # nothing after EOS
    masks = state.masks_along([5, 6])
    assert [m.nonzero().flatten().tolist() for m in masks] == [[5], [6], [7, 9]]
    state.advance_all([5, 6])
    twin = state.fork()
    twin.advance(7)
    assert twin.must_stop and not state.is_complete
    state.rollback(1)
    assert state.mask().nonzero().flatten().tolist() == [6]
    with pytest.raises(ConstraintViolation):
        state.advance(9)


def test_bad_allow_lists_are_config_errors():
    with pytest.raises(ConfigError, match="empty"):
        AllowList([[], []], TINY_VOCAB, [EOS], "ids.txt")
    with pytest.raises(ConfigError, match="outside the model's vocabulary"):
        AllowList([[3, TINY_VOCAB]], TINY_VOCAB, [EOS], "ids.txt")


# -- decoders under an allow-list ------------------------------------------------------------
def _request(prompt, constraint, sampling=None, max_new=16):
    request = make_request(prompt, max_new_tokens=max_new, sampling=sampling)
    request.constraint = constraint
    return request


def _prompt(sequences: list[list[int]]) -> list[int]:
    return [3, *sequences[0], 4, *sequences[1], 5, *sequences[0]][:24]


def run_pld(target, request):
    proposer = PromptLookupProposer(PromptLookupOptions(k=4, max_ngram=2))
    return engine.run_speculative("pld", PromptLookupOptions(), target, proposer, request)


def run_recycling(target, request):
    proposer = RecyclingProposer(AdjacencyMatrix(target.vocab_size, 4), build_template(12, 4, 4))
    return engine.run_speculative("recycling", NoOptions(), target, proposer, request)


def run_lookahead(target, request):
    options = LookaheadOptions(window=3, ngram=3, guesses=3)
    proposer = LookaheadProposer(options, request.prompt_ids)
    return engine.run_speculative("lookahead", options, target, proposer, request)


SPECULATIVE = {"pld": run_pld, "recycling": run_recycling, "lookahead": run_lookahead}


@pytest.mark.parametrize("seed", range(5))
def test_constrained_outputs_are_always_in_the_allow_list(seed):
    target = runner_for(tiny_llama(seed=seed))
    sequences = random_allow_list(seed)
    constraint = AllowList(sequences, TINY_VOCAB, [EOS], "test")
    sample = SamplingSettings(temperature=1.0, seed=seed)
    runs = {
        "greedy": decode_autoregressive(
            "greedy", NoOptions(), target, _request([2, 3], constraint)
        ),
        "sample": decode_autoregressive(
            "sample", NoOptions(), target, _request([2, 3], constraint, sample)
        ),
        **{
            name: run(target, _request(_prompt(sequences), constraint))
            for name, run in SPECULATIVE.items()
        },
        "pld-sample": run_pld(target, _request(_prompt(sequences), constraint, sample)),
    }
    for name, result in runs.items():
        assert result.finish_reason in {"constraint", "eos"}, name
        assert constraint.satisfied(result.token_ids, ""), (name, result.token_ids)
        assert result.constraint["satisfied"], name


@pytest.mark.parametrize("method", sorted(SPECULATIVE))
@pytest.mark.parametrize("seed", range(4))
def test_constrained_speculative_equals_constrained_greedy(tiny_runner, method, seed):
    sequences = random_allow_list(seed, n=20)
    constraint = AllowList(sequences, TINY_VOCAB, [EOS], "test")
    prompt = _prompt(sequences)
    greedy = decode_autoregressive("greedy", NoOptions(), tiny_runner, _request(prompt, constraint))
    spec = SPECULATIVE[method](tiny_runner, _request(prompt, constraint))
    assert spec.token_ids == greedy.token_ids
    assert spec.finish_reason == greedy.finish_reason


def test_pruning_is_counted_and_cuts_drafts():
    target = runner_for(tiny_llama(seed=1))
    sequences = random_allow_list(1, n=20)
    constraint = AllowList(sequences, TINY_VOCAB, [EOS], "test")
    result = run_pld(target, _request(_prompt(sequences), constraint))
    stats = result.constraint
    assert stats["drafted"] > 0 and 0 <= stats["pruned"] <= stats["drafted"]
    assert stats["masks"] >= len(result.steps) and stats["mask_s"] >= 0
    verified = sum(len(step.drafted) for step in result.steps)  # after pruning
    assert verified == stats["drafted"] - stats["pruned"]


def test_a_dead_end_is_a_clear_error():
    """A constraint whose mask allows nothing stops with a RunError, not garbage tokens."""
    target = runner_for(tiny_llama())
    constraint = AllowList([[5, 6]], TINY_VOCAB, [], "test")  # no EOS: after [5 6] nothing fits
    constraint.trie.indptr[2:] = constraint.trie.indptr[1]  # cut the edge 5 -> 6 as well
    with pytest.raises(Exception, match="allows no token"):
        decode_autoregressive("greedy", NoOptions(), target, _request([2, 3], constraint))


# -- distribution under sampling ---------------------------------------------------------------
VOCAB = 5
PROMPT = [2, 3, 4, 2, 3]
SAMPLES = 2000  # the broken twin scores p ~ 1e-16, the real rule p ~ 0.98 (seeded)
SETTINGS = SamplingSettings(temperature=0.9, top_k=4)
# token 2 is the draft's favourite (q = 0.43 after the prompt), so the draft often leaves the
# constraint; the last token must also make the sum even, so the masks vary with the prefix
ALLOWED = [
    list(s) for s in itertools.product(range(VOCAB), repeat=4) if 2 not in s and sum(s) % 2 == 0
]


def peaked(seed: int):
    model = tiny_llama(seed=seed, vocab=VOCAB, layers=1)
    with torch.no_grad():
        model.lm_head.weight.mul_(12.0)
    model.generation_config.eos_token_id = None
    return runner_for(model)


def exact_constrained_joint(target) -> torch.Tensor:
    """P(t2, t3, t4) of the masked, renormalised target, summing over t1. [VOCAB^3]"""
    seqs = list(itertools.product(range(VOCAB), repeat=3))
    ids = torch.tensor([PROMPT + list(s) for s in seqs])
    with torch.inference_mode():
        logits = target.model(ids).logits.float()
    n = len(PROMPT)
    joint = torch.zeros(VOCAB**3)
    for row, s in enumerate(seqs):
        p = 1.0
        for j in range(4):
            prefix = list(s[:j])
            mask = allowed_next(ALLOWED, prefix, VOCAB)[None]
            probs = target_distribution(logits[row : row + 1, n - 1 + j], SETTINGS, [], mask)[0]
            if j < 3:
                p = p * probs[s[j]]
            else:
                if not mask.any():
                    continue
                for t4 in range(VOCAB):
                    joint[s[1] * VOCAB * VOCAB + s[2] * VOCAB + t4] += p * probs[t4]
    return joint


def empirical(target, make_proposer) -> torch.Tensor:
    constraint = AllowList(ALLOWED, VOCAB, [], "test")
    counts = torch.zeros(VOCAB**3)
    for seed in range(SAMPLES):
        settings = SamplingSettings(**{**SETTINGS.__dict__, "seed": seed})
        request = _request(PROMPT, constraint, settings, max_new=4)
        result = engine.run_speculative(
            "t", DraftModelOptions(), target, make_proposer(), request, rejection_sampling
        )
        t2, t3, t4 = result.token_ids[1:4]
        counts[t2 * VOCAB * VOCAB + t3 * VOCAB + t4] += 1
    return counts


def chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    from scipy.stats import chisquare

    expected = probs * counts.sum()
    keep = expected >= 5
    obs = torch.cat([counts[keep], counts[~keep].sum()[None]])
    exp = torch.cat([expected[keep], expected[~keep].sum()[None]])
    return float(chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue)


@pytest.fixture(scope="module")
def models():
    target, draft = peaked(0), peaked(5)
    return target, draft, exact_constrained_joint(target)


def _cut_without_sentinel(draft, state):
    """The tempting bug: cut a draft-model draft at its first disallowed token under sampling,
    so that position's token comes from p instead of the residual max(0, p - q)."""
    if state.constraint is None:
        return None
    kept = state.prune(draft.tokens)
    draft.tokens = draft.tokens[:kept]
    return state.allowed_along(draft.tokens)


def test_constrained_speculative_sampling_keeps_the_constrained_distribution(models):
    target, draft, exact = models
    counts = empirical(target, lambda: DraftModelProposer(draft, DraftModelOptions(k=3)))
    assert chi2_pvalue(counts, exact) > 1e-3


def test_cutting_a_sampled_draft_without_its_rejection_is_detected(models, monkeypatch):
    target, draft, exact = models
    monkeypatch.setattr(engine, "constrain_chain", _cut_without_sentinel)
    counts = empirical(target, lambda: DraftModelProposer(draft, DraftModelOptions(k=3)))
    assert chi2_pvalue(counts, exact) < 1e-6


def test_compare_pools_constraint_metrics_over_turns():
    from decbench.compare.stats import constraint_metrics

    turn = {"kind": "allow", "satisfied": True, "mask_s": 0.002, "drafted": 8, "pruned": 2}
    ten = [list(range(10))]
    records = [
        sample_record(constraint=[turn], token_ids=ten, wall_time=[1.0]),
        sample_record(constraint=[{**turn, "satisfied": False}], token_ids=ten, wall_time=[1.0]),
    ]
    m = constraint_metrics(records)
    assert m.satisfied == 0.5 and m.outputs == 2
    assert m.mask_ms_per_step == pytest.approx(0.2)  # 4 ms over 20 steps
    assert m.mask_share == pytest.approx(0.002)  # 4 ms of 2 s
    assert m.pruned_share == pytest.approx(0.25)
    assert constraint_metrics([sample_record(constraint=[{}])]) is None


@pytest.mark.parametrize("seed", range(4))
def test_constrained_beam_search(seed):
    """Width 1 is constrained greedy; wider beams still end inside the allow-list."""
    from decbench.decoders.beam import BeamOptions, decode_beam

    target = runner_for(tiny_llama(seed=seed))
    sequences = random_allow_list(seed, n=20)
    constraint = AllowList(sequences, TINY_VOCAB, [EOS], "test")
    prompt = _prompt(sequences)
    greedy = decode_autoregressive("greedy", NoOptions(), target, _request(prompt, constraint))
    one = decode_beam("beam", BeamOptions(width=1), target, _request(prompt, constraint))
    assert one.token_ids == greedy.token_ids
    wide = decode_beam("beam", BeamOptions(width=3), target, _request(prompt, constraint))
    assert constraint.satisfied(wide.token_ids, "") and wide.constraint["satisfied"]

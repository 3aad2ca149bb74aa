"""Tree verification: masks, positions, compaction and acceptance (decoders/speculative/tree.py).

The first group proves that transformers honours our 4D masks: for Llama and Qwen2, under sdpa
and eager attention, the logits of every node of a random tree (and of a side branch) verified
in one forward equal those of running that node's path from scratch. The rest checks the tree
arithmetic on hand-written trees, the engine's tree path against greedy, and that multi-candidate
sampling keeps the target's distribution (with a broken twin that the test catches).
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from scipy.stats import chisquare

from decbench.decoders.base import NoOptions
from decbench.decoders.greedy import Greedy
from decbench.decoders.speculative import engine, tree
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext, SideBranch
from decbench.settings import SamplingSettings
from tests.conftest import (
    TINY_VOCAB,
    make_request,
    no_models_ctx,
    runner_for,
    tiny_llama,
    tiny_qwen2,
)

ATOL = 1e-5


def family_runner(family: str, attention: str, seed: int = 0):
    model = tiny_llama(seed) if family == "llama" else tiny_qwen2(seed)
    model.set_attn_implementation(attention)
    return runner_for(model)


def sequential_logits(runner, ids: list[int]) -> torch.Tensor:
    """Reference: the last position's logits of one fresh forward over `ids`. [vocab]"""
    with torch.inference_mode():
        return runner.model(torch.tensor([ids])).logits[0, -1].float()


def random_tree(rng: random.Random, n: int) -> tuple[list[int], list[int]]:
    parents = [rng.randrange(-1, i) for i in range(n)]
    tokens = [rng.randrange(2, TINY_VOCAB) for _ in range(n)]
    return tokens, parents


def node_path(parents: list[int], node: int) -> list[int]:
    path = []
    while node != -1:
        path.append(node)
        node = parents[node]
    return path[::-1]


# -- transformers honours the mask -------------------------------------------------------------
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_every_tree_node_equals_its_path_run_sequentially(family, attention):
    runner = family_runner(family, attention)
    rng = random.Random(7)
    for trial in range(4):
        prefix = [rng.randrange(2, TINY_VOCAB) for _ in range(3 + 4 * trial)]
        tokens, parents = random_tree(rng, 6 + 5 * trial)
        runner.prefill(torch.tensor([prefix[:-1]]))
        block = tree.flatten(Draft(tokens, parents=parents), prefix[-1], runner.cache_len)
        got = runner.forward(block.ids, block.positions, block.mask).logits[0]
        torch.testing.assert_close(got[0], sequential_logits(runner, prefix), atol=ATOL, rtol=0)
        for node in range(len(tokens)):
            ids = prefix + [tokens[j] for j in node_path(parents, node)]
            expected = sequential_logits(runner, ids)
            torch.testing.assert_close(got[1 + node], expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_side_branch_tokens_see_only_their_own_sequence(family, attention):
    """A lookahead-like side branch next to a tree: side token c (offset 2) sees a (offset 1)
    but not b, and neither side nor tree see each other."""
    runner = family_runner(family, attention)
    prefix = [5, 9, 14, 3]
    side = SideBranch(
        tokens=[20, 21, 22],
        offsets=[1, 2, 2],
        mask=torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=torch.bool),
    )
    draft = Draft([30, 31], parents=[-1, 0], side=side)
    runner.prefill(torch.tensor([prefix[:-1]]))
    block = tree.flatten(draft, prefix[-1], runner.cache_len)
    got = runner.forward(block.ids, block.positions, block.mask).logits[0]
    expected = [
        prefix,
        [*prefix, 30],
        [*prefix, 30, 31],
        [*prefix, 20],
        [*prefix, 20, 21],
        [*prefix, 20, 22],
    ]
    for row, ids in enumerate(expected):
        torch.testing.assert_close(got[row], sequential_logits(runner, ids), atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_compacting_to_a_path_leaves_the_cache_of_that_path(family):
    runner = family_runner(family, "sdpa")
    rng = random.Random(3)
    tokens, parents = random_tree(rng, 12)
    prefix = [4, 8, 15, 16]
    deepest = max(range(12), key=lambda i: len(node_path(parents, i)))
    path = node_path(parents, deepest)
    side = SideBranch([40, 41], [1, 2], torch.tensor([[1, 0], [1, 1]], dtype=torch.bool))
    runner.prefill(torch.tensor([prefix[:-1]]))
    past = runner.cache_len
    block = tree.flatten(Draft(tokens, parents=parents, side=side), prefix[-1], past)
    runner.forward(block.ids, block.positions, block.mask)
    runner.compact(past, tree.compact_keep(path))
    kept = prefix + [tokens[j] for j in path]
    assert runner.cache_len == len(kept)
    got = runner.forward(torch.tensor([[7]])).logits[0, -1]
    torch.testing.assert_close(got, sequential_logits(runner, [*kept, 7]), atol=ATOL, rtol=0)


# -- tree arithmetic on hand-written trees --------------------------------------------------------
def hand_tree() -> Draft:
    #        root
    #       /    \
    #     0:10   1:11
    #     /  \      \
    #  2:12  3:13   4:14
    #    |
    #  5:15
    return Draft([10, 11, 12, 13, 14, 15], parents=[-1, -1, 0, 0, 1, 2])


def test_depths_children_and_masks():
    draft = hand_tree()
    assert tree.depths(draft.parents) == [1, 1, 2, 2, 2, 3]
    assert tree.children(draft.parents) == [[0, 1], [2, 3], [4], [5], [], [], []]
    mask = tree.ancestor_mask(draft.parents)
    assert mask[5].nonzero().flatten().tolist() == [0, 2, 5]  # its path, nothing else
    assert mask[4].nonzero().flatten().tolist() == [1, 4]
    block = tree.flatten(draft, pending=99, past=10)
    assert block.ids.tolist() == [[99, 10, 11, 12, 13, 14, 15]]
    assert block.positions.tolist() == [[10, 11, 11, 12, 12, 12, 13]]
    assert block.mask[0, :, 0].all()  # everyone sees the pending token
    assert not block.mask[0, 0, 1:].any()  # the pending token sees no node


def test_parents_must_come_first():
    with pytest.raises(ValueError, match="parents must come first"):
        tree.depths([-1, 2, 0])


def test_greedy_acceptance_follows_the_matching_child():
    draft = hand_tree()
    # targets after: root, 0, 1, 2, 3, 4, 5
    assert tree.accept_greedy(draft, [10, 12, 0, 15, 0, 0, 33]) == tree.TreeVerdict(
        [0, 2, 5], 33, False
    )  # deepest leaf reached: 33 is a free bonus token
    assert tree.accept_greedy(draft, [11, 0, 14, 0, 0, 8, 0]) == tree.TreeVerdict([1, 4], 8, False)
    # after node 0 the target wants 13's sibling 77: recovered, path [0]
    assert tree.accept_greedy(draft, [10, 77, 0, 0, 0, 0, 0]) == tree.TreeVerdict([0], 77, True)
    assert tree.accept_greedy(draft, [42, 0, 0, 0, 0, 0, 0]) == tree.TreeVerdict([], 42, True)


def test_best_branch_extends_the_accepted_path_through_first_children():
    draft = hand_tree()
    assert tree.best_branch(draft, []) == [0, 2, 5]
    assert tree.best_branch(draft, [1]) == [1, 4]
    assert tree.best_branch(draft, [0, 3]) == [0, 3]


def test_prune_depth_reindexes_parents():
    pruned = tree.prune_depth(hand_tree(), 2)
    assert pruned.tokens == [10, 11, 12, 13, 14]
    assert pruned.parents == [-1, -1, 0, 0, 1]
    assert tree.prune_depth(hand_tree(), 0).tokens == []


def test_tree_builder_shares_prefixes_and_respects_the_limit():
    builder = tree.TreeBuilder()
    assert builder.add_path([1, 2, 3], "pool") == 3
    assert builder.add_path([1, 2, 4], "prompt") == 3  # shares 1 2, adds 4
    assert builder.add_path([5, 6], "pool", limit=5) == 1  # room for one more node only
    assert builder.tokens == [1, 2, 3, 4, 5]
    assert builder.parents == [-1, 0, 1, 1, -1]
    assert builder.sources == ["pool", "pool", "pool", "prompt", "pool"]
    assert builder.add_path([1, 2, 3, 9], "x", limit=5) == 3  # existing nodes cost nothing


def test_compact_keep_lists_pending_then_path():
    assert tree.compact_keep([0, 2, 5]).tolist() == [0, 1, 3, 6]


# -- the engine's tree path ---------------------------------------------------------------------
class FixedTreeProposer:
    """Proposes, after every context, the same hand-shaped tree of guessed tokens: the next
    tokens of a greedy run (so some get accepted) mixed with wrong siblings."""

    def __init__(self, oracle: list[int], prompt_len: int, width: int, depth: int) -> None:
        self.oracle = oracle  # prompt + greedy continuation
        self.prompt_len = prompt_len
        self.width = width
        self.depth = depth
        self.seen: list[Feedback] = []

    def propose(self, ctx: ProposerContext) -> Draft:
        builder = tree.TreeBuilder()
        start = len(ctx.tokens)
        truth = self.oracle[start : start + self.depth]
        for w in range(self.width):
            wrong = [(t + 1 + w) % TINY_VOCAB for t in truth]
            cut = (start + w) % (len(truth) + 1)  # the true line, then wrong tokens
            builder.add_path(truth[:cut] + wrong[cut:], f"s{w}")
        return builder.draft()

    def observe(self, feedback: Feedback) -> None:
        self.seen.append(feedback)


@pytest.mark.parametrize("width,depth", [(1, 1), (2, 3), (3, 5), (4, 2)])
def test_engine_tree_path_equals_greedy(tiny_runner, width, depth):
    prompts = [[3, 9, 4, 17, 22], [5, 5, 5, 5], [30, 2, 41, 7, 7, 12, 40]]
    for prompt in prompts:
        greedy = Greedy(tiny_runner, Greedy.Options(), no_models_ctx())
        expected = greedy.generate(make_request(prompt, 20)).token_ids
        proposer = FixedTreeProposer(prompt + expected, len(prompt), width, depth)
        result = engine.run_speculative(
            "t", NoOptions(), tiny_runner, proposer, make_request(prompt, 20)
        )
        assert result.token_ids == expected, (width, depth, prompt)
        assert sum(s.emitted for s in result.steps) == len(expected)
        assert result.stats["mat"] > 1
        for step in result.steps[1:]:
            if step.tree is None:  # no budget left for drafts: a plain step
                assert step.drafted == [] and step.emitted == 1
                continue
            accepted = [step.tree.tokens[i] for i in step.tree.accepted_path]
            assert accepted == step.drafted[: step.accepted]
        assert all(f.logits is not None for f in proposer.seen)
        assert all(f.path is not None for f in proposer.seen if f.draft.is_tree)


def test_engine_tree_path_applies_the_repetition_penalty_per_path(tiny_runner):
    """Each node's argmax is penalised with its own path as context, as greedy would be."""
    penalty = SamplingSettings(repetition_penalty=1.8)
    for prompt in ([3, 9, 4, 17, 22], [5, 5, 6, 5, 6]):
        greedy = Greedy(tiny_runner, Greedy.Options(), no_models_ctx())
        expected = greedy.generate(make_request(prompt, 20, sampling=penalty)).token_ids
        proposer = FixedTreeProposer(prompt + expected, len(prompt), 3, 4)
        request = make_request(prompt, 20, sampling=penalty)
        result = engine.run_speculative("t", NoOptions(), tiny_runner, proposer, request)
        assert result.token_ids == expected
        assert result.stats["mat"] > 1


def test_engine_tree_path_stops_at_eos_inside_the_tree(tiny_runner):
    prompt = [3, 9, 4, 17, 22]
    greedy = Greedy(tiny_runner, Greedy.Options(), no_models_ctx())
    expected = greedy.generate(make_request(prompt, 12)).token_ids
    tiny_runner.model.generation_config.eos_token_id = expected[5]
    try:
        want = greedy.generate(make_request(prompt, 12)).token_ids
        proposer = FixedTreeProposer(prompt + expected, len(prompt), 2, 6)
        got = engine.run_speculative(
            "t", NoOptions(), tiny_runner, proposer, make_request(prompt, 12)
        )
        assert got.token_ids == want
        assert got.finish_reason == "eos"
    finally:
        tiny_runner.model.generation_config.eos_token_id = 1


# -- lossless sampling over trees --------------------------------------------------------------
def broken_tree_rule(draft, target_probs, generator) -> tree.TreeVerdict:
    """The classic multi-candidate bug: test every sibling against the full p (never removing
    the rejected ones), then draw the recovered token from p."""
    kids = tree.children(tree.tree_parents(draft))
    path, here = [], -1
    while True:
        p = target_probs(here + 1)
        for child in kids[here + 1]:
            if torch.rand((), generator=generator).item() < p[draft.tokens[child]].item():
                path.append(child)
                here = child
                break
        else:
            recovered = bool(kids[here + 1])
            return tree.TreeVerdict(
                path, int(torch.multinomial(p, 1, generator=generator)), recovered
            )


def test_try_candidates_draws_exactly_from_p():
    """The first token leaving a node with three candidates is distributed as p."""
    p = torch.tensor([0.05, 0.4, 0.25, 0.2, 0.1])
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(6000):
        accepted, residual = tree.try_candidates(p, [1, 3, 0], generator)
        token = (
            [1, 3, 0][accepted]
            if accepted is not None
            else int(torch.multinomial(residual, 1, generator=generator))
        )
        counts[token] += 1
    assert chisquare(counts.numpy(), (p * counts.sum()).numpy()).pvalue > 1e-3


SAMPLING_VOCAB = 5
SAMPLING_PROMPT = [2, 3, 4, 2, 3]
SAMPLING = SamplingSettings(temperature=0.9, top_k=4)


class BushyProposer:
    """A fixed tree over a 5-token vocabulary: two children under the root, two under the
    first, one under the second, so every branch of the walk gets exercised."""

    def propose(self, ctx: ProposerContext) -> Draft:
        last = ctx.tokens[-1]
        a, b = (last + 1) % SAMPLING_VOCAB, (last + 2) % SAMPLING_VOCAB
        return Draft([a, b, b, a, a], parents=[-1, -1, 0, 0, 1])

    def observe(self, feedback: Feedback) -> None:
        pass


def tree_empirical_joint(target, rule, samples: int) -> torch.Tensor:
    counts = torch.zeros(SAMPLING_VOCAB**3)
    for seed in range(samples):
        settings = SamplingSettings(**{**SAMPLING.__dict__, "seed": seed})
        request = make_request(SAMPLING_PROMPT, max_new_tokens=4, sampling=settings)
        result = engine.run_speculative(
            "t", NoOptions(), target, BushyProposer(), request, tree_rule=rule
        )
        t2, t3, t4 = result.token_ids[1:4]
        counts[t2 * SAMPLING_VOCAB**2 + t3 * SAMPLING_VOCAB + t4] += 1
    return counts


@pytest.fixture(scope="module")
def peaked_target():
    from tests.test_lossless_sampling import peaked

    target = peaked(0)
    return target, exact_joint(target, SAMPLING_PROMPT)


def test_tree_sampling_preserves_the_distribution(peaked_target):
    from tests.test_lossless_sampling import chi2_pvalue

    target, exact = peaked_target
    counts = tree_empirical_joint(target, tree.accept_sampling, 2000)
    assert chi2_pvalue(counts, exact) > 1e-3


def test_broken_tree_rule_is_detected(peaked_target):
    from tests.test_lossless_sampling import chi2_pvalue

    target, exact = peaked_target
    counts = tree_empirical_joint(target, broken_tree_rule, 800)
    assert chi2_pvalue(counts, exact) < 1e-6


# -- helpers the method tests share -----------------------------------------------------------
def sampling_matches_target(
    decoder_for, samples: int = 1200, prompt: list[int] = SAMPLING_PROMPT
) -> None:
    """A tree method under sampling reproduces the target's joint distribution of tokens 2..4
    (chi-square, as in test_lossless_sampling), and did accept drafts on the way."""
    from tests.test_lossless_sampling import chi2_pvalue, peaked

    target = peaked(0)
    decoder = decoder_for(target)
    counts = torch.zeros(SAMPLING_VOCAB**3)
    accepted = 0
    for seed in range(samples):
        settings = SamplingSettings(**{**SAMPLING.__dict__, "seed": seed})
        result = decoder.generate(make_request(prompt, 4, sampling=settings))
        t2, t3, t4 = result.token_ids[1:4]
        counts[t2 * SAMPLING_VOCAB**2 + t3 * SAMPLING_VOCAB + t4] += 1
        accepted += result.stats["accepted"]
    assert accepted > samples // 4  # drafts were accepted: the check is not vacuous
    assert chi2_pvalue(counts, exact_joint(target, prompt)) > 1e-3


def exact_joint(target, prompt: list[int]) -> torch.Tensor:
    """P(t2, t3, t4) after `prompt` under the target with SAMPLING, summed over t1. [5^3]"""
    from decbench.sampler import target_distribution

    seqs = list(itertools.product(range(SAMPLING_VOCAB), repeat=3))  # (t1, t2, t3)
    ids = torch.tensor([prompt + list(s) for s in seqs])
    with torch.inference_mode():
        logits = target.model(ids).logits.float()
    n = len(prompt)
    probs = [target_distribution(logits[:, n - 1 + j], SAMPLING, []) for j in range(4)]
    joint = torch.zeros(SAMPLING_VOCAB, SAMPLING_VOCAB, SAMPLING_VOCAB)
    for row, (t1, t2, t3) in enumerate(seqs):
        joint[t2, t3] += probs[0][row, t1] * probs[1][row, t2] * probs[2][row, t3] * probs[3][row]
    return joint.flatten()


DEFAULT_MODEL_PROMPT = (
    "Summarize in two sentences: The city council met on Tuesday to discuss the new budget. "
    "The budget includes funding for road repairs, a new library, and more police officers. "
    "Several residents spoke against the increase in property taxes that would pay for these "
    "projects. The council will vote on the budget next week."
)


def assert_default_model_speedup(session, decoder_cls, sampling: SamplingSettings) -> None:
    """On the default model: identical tokens to greedy and MAT > 1 (40 new tokens)."""
    from decbench.decoders.base import Request
    from decbench.settings import GenerationSettings

    ids = session.encode(DEFAULT_MODEL_PROMPT)
    generation = GenerationSettings(max_new_tokens=40)
    greedy = Greedy(session.target, Greedy.Options(), session.decoder.ctx)
    expected = greedy.generate(Request("", ids, generation, sampling)).token_ids
    decoder = decoder_cls(session.target, decoder_cls.Options(), session.decoder.ctx)
    result = decoder.generate(Request("", ids, generation, sampling))
    assert result.token_ids == expected
    assert result.stats["mat"] > 1.0
    assert any(step.tree is not None and step.tree.accepted_path for step in result.steps)

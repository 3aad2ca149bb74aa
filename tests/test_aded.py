"""ADED: the tri-gram table (pruning, probabilities, adaptation), the Monte Carlo drafter on
hand-written tables, token identity with greedy on tiny models, lossless sampling, and MAT > 1
on the default model."""

from __future__ import annotations

import random

import pytest
import torch

from decbench.decoders.speculative import tree
from decbench.decoders.speculative.aded import (
    Aded,
    AdedProposer,
    MonteCarloDrafter,
    TrigramTable,
)
from decbench.decoders.speculative.proposer import Draft, Feedback
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conformance import assert_equals_greedy
from tests.conftest import no_models_ctx, repetitive_prompts
from tests.test_tree import sampling_matches_target


# -- the table --------------------------------------------------------------------------------
def test_table_counts_prunes_and_normalises():
    table = TrigramTable(top_k=2)
    table.add_text([1, 2, 3, 1, 2, 3, 1, 2, 4], weight=1.0)  # after (1, 2): 3 twice, 4 once
    assert table.successors((1, 2)) == [(3, 2 / 3), (4, 1 / 3)]
    table.add(1, 2, 5, 0.5)  # a third successor: the lightest (5 itself) is pruned
    assert [c for c, _ in table.successors((1, 2))] == [3, 4]
    table.add(1, 2, 4, 5.0)  # adaptation reorders the row
    assert [c for c, _ in table.successors((1, 2))] == [4, 3]
    assert table.successors((9, 9)) == []


def test_proposer_learns_committed_text_and_off_path_predictions():
    options = Aded.Options(verify_weight=0.5)
    proposer = AdedProposer(options, [1, 2, 3])
    # a verified tree under pending 3: node 0 (token 4) accepted, node 1 (token 5) rejected
    draft = Draft([4, 5], parents=[-1, -1])
    logits = torch.zeros(3, 10)
    logits[1, 6] = 1.0  # after 3, 4 the target wants 6 (committed as the bonus)
    logits[2, 7] = 1.0  # after 3, 5 the target would have written 7
    tokens = [1, 2, 3, 4, 6]
    proposer.observe(Feedback(2, 1, tokens, draft, logits, [0], pending=3))
    assert proposer.table.successors((2, 3)) == [(4, 1.0)]
    assert proposer.table.successors((3, 4)) == [(6, 1.0)]
    assert proposer.table.rows[(3, 5)] == {7: 0.5}  # learned from the rejected branch
    assert (4, 6) not in proposer.table.rows  # nothing after the bonus yet


# -- the drafter ------------------------------------------------------------------------------
def chain_table() -> TrigramTable:
    table = TrigramTable(top_k=4)
    table.add_text([1, 2, 3, 4, 5, 6], 3.0)  # a strong line 1 2 3 4 5 6
    table.add_text([1, 2, 7, 8], 1.0)  # a weaker alternative after (1, 2)
    return table


def test_mcts_draft_is_a_valid_tree_that_holds_the_strong_line():
    options = Aded.Options(nodes=6, depth=4, iterations=64)
    drafter = MonteCarloDrafter(chain_table(), options, random.Random(0))
    draft = drafter.draft((1, 2), depth=4)
    depth = tree.depths(draft.parents)  # parents first
    assert len(draft.tokens) <= 6 and max(depth) <= 4
    siblings = [(p, t) for p, t in zip(draft.parents, draft.tokens, strict=True)]
    assert len(set(siblings)) == len(siblings)  # unique siblings
    paths = {tuple(draft.tokens[j] for j in tree_path(draft.parents, n)) for n in range(len(depth))}
    assert (3, 4, 5, 6) in paths  # exploitation: the strong line to full depth
    assert (7,) in paths  # exploration: the weaker sibling was tried
    assert draft.sources == ["trigram"] * len(draft.tokens)


def test_mcts_is_deterministic_for_a_seed_and_empty_for_unseen_context():
    options = Aded.Options(nodes=6, depth=3, iterations=32)
    a = MonteCarloDrafter(chain_table(), options, random.Random(5)).draft((1, 2), 3)
    b = MonteCarloDrafter(chain_table(), options, random.Random(5)).draft((1, 2), 3)
    assert (a.tokens, a.parents) == (b.tokens, b.parents)
    empty = MonteCarloDrafter(chain_table(), options, random.Random(5)).draft((9, 9), 3)
    assert empty.tokens == []


def tree_path(parents: list[int], node: int) -> list[int]:
    out = []
    while node != -1:
        out.append(node)
        node = parents[node]
    return out[::-1]


# -- lossless -------------------------------------------------------------------------------------
PROMPTS = repetitive_prompts(5, seed=6)


@pytest.mark.parametrize(
    "options",
    [
        dict(nodes=1, depth=1, iterations=1),
        dict(nodes=4, depth=2, iterations=8, top_k=2),
        dict(nodes=12, depth=4, iterations=48),
        dict(nodes=20, depth=6, iterations=64, exploration=3.0, verify_weight=0.0),
    ],
)
def test_aded_equals_greedy(tiny_runner, options):
    decoder = Aded(tiny_runner, Aded.Options(**options), no_models_ctx())
    results = assert_equals_greedy(decoder, tiny_runner, PROMPTS)
    assert sum(r.stats["accepted"] for r in results) > 0  # not all rejected: not vacuous


def test_sampling_preserves_the_distribution():
    """The prompt is a random text over the 5-token vocabulary, so that the tri-gram table
    knows most contexts and the trees have siblings to try."""
    options = Aded.Options(nodes=6, depth=3, iterations=16)
    rng = random.Random(1)
    prompt = [rng.randrange(5) for _ in range(100)]

    def decoder_for(target):
        return Aded(target, options, no_models_ctx())

    sampling_matches_target(decoder_for, prompt=prompt)


def test_bad_options_are_config_errors(tiny_runner):
    for bad in (dict(nodes=0), dict(depth=0), dict(iterations=0), dict(exploration=-1.0)):
        with pytest.raises(ConfigError, match="method\\."):
            Aded(tiny_runner, Aded.Options(**bad), no_models_ctx())


@pytest.mark.model
def test_aded_on_the_default_model(default_session):
    from tests.test_tree import assert_default_model_speedup

    assert_default_model_speedup(default_session, Aded, SamplingSettings())

"""Lookahead decoding: the n-gram pool, the Jacobi window's mask and update on hand-written
tokens, the window's logits against sequential runs, token identity with greedy on tiny models
for many (W, N, G), lossless sampling, and MAT > 1 on the default model."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.speculative import tree
from decbench.decoders.speculative.lookahead import (
    CONTEXT,
    JACOBI,
    JacobiWindow,
    Lookahead,
    LookaheadProposer,
    NgramPool,
)
from decbench.decoders.speculative.proposer import ProposerContext
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conformance import assert_equals_greedy
from tests.conftest import (
    greedy_ids,
    make_request,
    no_models_ctx,
    repetitive_prompts,
    runner_for,
    tiny_llama,
)
from tests.test_tree import sampling_matches_target, sequential_logits


# -- the pool ----------------------------------------------------------------------------------
def test_pool_keeps_the_most_recent_continuations_per_key():
    pool = NgramPool(size=2)
    pool.add(7, (1, 2), JACOBI)
    pool.add(7, (3, 4), CONTEXT)
    pool.add(7, (1, 2), JACOBI)  # seen again: becomes the most recent
    pool.add(7, (5, 6), JACOBI)  # evicts the least recent, (3, 4)
    assert pool.candidates(7) == [((5, 6), JACOBI), ((1, 2), JACOBI)]
    assert pool.candidates(8) == []
    assert len(pool) == 2


# -- the Jacobi window ---------------------------------------------------------------------------
def test_window_mask_gives_each_token_one_sequence():
    window = JacobiWindow([10, 11, 12], depth=3)
    window.levels.append([20, 21, 22])
    side = window.side_branch()
    assert side.tokens == [10, 11, 12, 20, 21, 22]
    assert side.offsets == [1, 2, 3, 2, 3, 4]
    sees = {i: side.mask[i].nonzero().flatten().tolist() for i in range(6)}
    assert sees[0] == [0]  # (0, 0)
    assert sees[2] == [0, 1, 2]  # (0, 2): level 0 up to its column
    assert sees[4] == [0, 1, 4]  # (1, 1): level 0 up to column 1, then itself
    assert sees[5] == [0, 1, 2, 5]


def test_window_advances_one_level_and_emits_column_ngrams_when_full():
    window = JacobiWindow([10, 11], depth=2)

    def logits_for(tokens):  # [W, vocab] one-hot at the given argmax tokens
        return torch.nn.functional.one_hot(torch.tensor(tokens), 50).float()

    assert window.advance(logits_for([20, 21])) == []  # warm-up: a second level
    assert window.levels == [[10, 11], [20, 21]]
    assert window.advance(logits_for([30, 31])) == [(10, 20, 30), (11, 21, 31)]
    assert window.levels == [[20, 21], [30, 31]]


def test_window_logits_equal_each_column_sequence_run_sequentially():
    """Token (l, i) of the window computes what the target would after the pending token,
    level 0 up to column i and column i's lower levels."""
    runner = runner_for(tiny_llama(seed=2))
    window = JacobiWindow([10, 11, 12], depth=3)
    window.levels += [[20, 21, 22], [30, 31, 32]]
    prefix = [4, 5, 6]
    draft = tree.TreeBuilder().draft(side=window.side_branch())
    runner.prefill(torch.tensor([prefix[:-1]]))
    block = tree.flatten(draft, prefix[-1], runner.cache_len)
    got = runner.forward(block.ids, block.positions, block.mask).logits[0]
    levels = window.levels
    for level in range(3):
        for column in range(3):
            seen = levels[0][: column + 1] + [levels[j][column] for j in range(1, level + 1)]
            row = 1 + level * 3 + column
            expected = sequential_logits(runner, prefix + seen)
            torch.testing.assert_close(got[row], expected, atol=1e-5, rtol=0)


# -- the proposer ---------------------------------------------------------------------------------
def test_proposer_merges_pool_candidates_into_a_tree_with_sources():
    options = Lookahead.Options(window=2, ngram=3, guesses=3, prompt_pool=True)
    prompt = [5, 6, 7, 9, 5, 6, 8]
    proposer = LookaheadProposer(options, prompt)
    proposer.pool.add(6, (7, 1), JACOBI)  # shares 7 with the prompt's (7, 9)
    ctx = ProposerContext([*prompt, 5, 6], len(prompt), 10, SamplingSettings(), None)
    draft = proposer.propose(ctx)
    # key 6 in context: (7, 9) and (8, 5) from the text, (7, 1) from the window
    paths = {
        tuple(draft.tokens[j] for j in path): draft.sources[path[-1]]
        for path in (leaf_path(draft.parents, n) for n in range(len(draft.tokens)))
    }
    assert paths[(7, 1)] == JACOBI
    assert paths[(7, 9)] == CONTEXT
    assert paths[(8, 5)] == CONTEXT
    assert draft.tokens.count(7) == 1  # the shared first token is one node
    assert len(draft.side.tokens) == 2  # the window's first level (W = 2)


def leaf_path(parents: list[int], node: int) -> list[int]:
    out = []
    while node != -1:
        out.append(node)
        node = parents[node]
    return out[::-1]


# -- lossless -------------------------------------------------------------------------------------
PROMPTS = repetitive_prompts(5, seed=2)


@pytest.mark.parametrize(
    "options",
    [
        dict(window=1, ngram=2, guesses=1),
        dict(window=3, ngram=3, guesses=2),
        dict(window=4, ngram=4, guesses=4),
        dict(window=5, ngram=5, guesses=3, prompt_pool=False),
        dict(window=2, ngram=6, guesses=6, seed=3),
    ],
)
def test_lookahead_equals_greedy(tiny_runner, options):
    decoder = Lookahead(tiny_runner, Lookahead.Options(**options), no_models_ctx())
    results = assert_equals_greedy(decoder, tiny_runner, PROMPTS)
    assert sum(r.stats["accepted"] for r in results) > 0  # not all rejected: not vacuous


def test_jacobi_ngrams_alone_get_accepted():
    """Without the context pool, drafts come only from the Jacobi window, and some land: a
    model whose greedy output is a fixed cycle converges under Jacobi iteration."""
    from tests.test_speculative import copying_model

    runner = runner_for(copying_model())
    options = Lookahead.Options(window=3, ngram=3, guesses=3, prompt_pool=False)
    result = Lookahead(runner, options, no_models_ctx()).generate(make_request([5, 6, 7], 30))
    assert result.token_ids == greedy_ids(runner, [5, 6, 7], 30)
    assert result.stats["mat"] > 1.5
    sources = {s for step in result.steps if step.tree for s in step.tree.sources}
    assert sources == {JACOBI}


def test_sampling_preserves_the_distribution():
    options = Lookahead.Options(window=2, ngram=3, guesses=3)

    def decoder_for(target):
        return Lookahead(target, options, no_models_ctx())

    sampling_matches_target(decoder_for)


def test_bad_options_are_config_errors(tiny_runner):
    for bad in (dict(window=0), dict(ngram=1), dict(guesses=0)):
        with pytest.raises(ConfigError, match="method\\."):
            Lookahead(tiny_runner, Lookahead.Options(**bad), no_models_ctx())


@pytest.mark.model
def test_lookahead_on_the_default_model(default_session):
    from tests.test_tree import assert_default_model_speedup

    assert_default_model_speedup(default_session, Lookahead, SamplingSettings())

"""EAGLE-2: the tree expansion under the draft's tree mask scores every node as a sequential run
of the draft along its path would, the rerank keeps the most confident ancestor-closed nodes,
the draft follows the accepted tree path with the target's own features, token identity with
greedy on tiny models (fixed and "auto" sizes), lossless sampling, bad options, and the default
model with the shipped draft."""

from __future__ import annotations

import math

import pytest
import torch

from decbench.decoders.speculative import tree
from decbench.decoders.speculative.eagle2 import CandidateTree, Eagle2, Eagle2Options, expand
from decbench.drafts.eagle import EagleChain
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conftest import greedy_ids, make_request, no_models_ctx, repetitive_prompts
from tests.test_eagle import eagle_folder, random_draft, shape_of, trained_folder


def eagle2_for(runner, folder, **options) -> Eagle2:
    return Eagle2(runner, Eagle2Options(draft=str(folder), **options), no_models_ctx())


# -- the expansion ------------------------------------------------------------------------------
def test_tree_expansion_scores_each_node_as_its_path_run_sequentially():
    draft = random_draft()
    embed, rows = torch.randn(20, 32), torch.randn(20, 32)
    chain = EagleChain(draft, embed, rows)
    chain.extend(torch.randn(5, 32), [3, 7, 1, 9, 4])
    candidates = expand(chain, top_k=3, depth=4)
    assert chain.length == 5 and chain.past[0].shape[2] == 5  # the tree left no rows behind
    assert len(candidates.tokens) == 3 + 3 * 9  # top_k at depth 1, top_k^2 at each deeper one
    with torch.no_grad():
        for node, token in enumerate(candidates.tokens):
            path = [node]
            while candidates.parents[path[-1]] != tree.ROOT:
                path.append(candidates.parents[path[-1]])
            path.reverse()
            feature, past, score = chain.last, chain.past, 0.0
            for step, at in enumerate(path):  # the draft run along the path, one row at a time
                logp = (feature @ rows.t()).log_softmax(-1)
                score += float(logp[candidates.tokens[at]])
                embeds = embed[candidates.tokens[at]][None, None]
                out, past = draft(embeds, feature[None, None], torch.tensor([5 + step]), past)
                feature = out[0, -1]
            assert math.isclose(candidates.scores[node], score, rel_tol=1e-4, abs_tol=1e-4), token


def test_rerank_keeps_the_most_confident_nodes_with_their_ancestors():
    candidates = CandidateTree()
    a = candidates.add(5, tree.ROOT, math.log(0.6))
    b = candidates.add(6, tree.ROOT, math.log(0.3))
    c = candidates.add(7, a, math.log(0.6 * 0.9))  # 0.54: beats b
    candidates.add(8, a, math.log(0.6 * 0.05))
    candidates.add(9, c, math.log(0.54))  # ties with its parent: the parent still comes first
    draft = candidates.best(2)
    assert draft.tokens == [5, 7] and draft.parents == [-1, 0]
    draft = candidates.best(3)  # the grandchild (0.54) beats the second root child (0.3)
    assert draft.tokens == [5, 7, 9] and draft.parents == [-1, 0, 1]
    draft = candidates.best(4)
    assert draft.tokens == [5, 6, 7, 9] and draft.parents == [-1, -1, 0, 2]
    assert b == 1


# -- lossless -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("top_k", "depth", "nodes"), [(1, 3, 3), (2, 3, 4), (3, 4, 12)])
def test_trained_eagle2_equals_greedy(tiny_runner, tmp_path, top_k, depth, nodes):
    eagle2 = eagle2_for(
        tiny_runner, trained_folder(tiny_runner, tmp_path), top_k=top_k, depth=depth, nodes=nodes
    )
    accepted, trees = 0, 0
    for prompt in repetitive_prompts(6):
        result = eagle2.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 24)
        accepted += result.stats["accepted"]
        trees += sum(step.tree is not None for step in result.steps)
    assert accepted > 0 and trees > 0


def test_auto_tree_size_equals_greedy_and_reports_its_inputs(tiny_runner, tmp_path):
    eagle2 = eagle2_for(
        tiny_runner, trained_folder(tiny_runner, tmp_path), top_k=3, depth=3, nodes="auto"
    )
    for prompt in repetitive_prompts(3):
        result = eagle2.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 24)
    size = result.stats["proposer"]["tree_size"]
    assert [row["tokens"] for row in size["verify_cost_ms"]] == [
        1,
        2,
        4,
        8,
        16,
        22,
    ]  # 3 + 2 * 9 + 1
    assert size["calibration"] > 0 and 1 <= size["mean_nodes"] <= 21
    assert sum(size["nodes_histogram"].values()) > 0


def test_eagle2_stops_at_eos_and_budget(tiny_runner, tmp_path):
    eagle2 = eagle2_for(tiny_runner, eagle_folder(tmp_path, shape_of(tiny_runner)), depth=5)
    for n in (1, 2, 5):
        assert eagle2.generate(make_request([2, 3, 4], n)).token_ids == greedy_ids(
            tiny_runner, [2, 3, 4], n
        )


def test_bad_options_are_config_errors(tiny_runner, tmp_path):
    folder = eagle_folder(tmp_path, shape_of(tiny_runner))
    for bad in ({"top_k": 0}, {"depth": 0}, {"nodes": 0}, {"nodes": "many"}):
        with pytest.raises(ConfigError, match=rf"method\.{next(iter(bad))} must be >= 1"):
            eagle2_for(tiny_runner, folder, **bad)


# -- the default model --------------------------------------------------------------------------
@pytest.mark.model
def test_eagle2_on_the_default_model(default_session):
    from decbench.decoders.base import Request
    from decbench.decoders.greedy import Greedy
    from decbench.settings import GenerationSettings
    from tests.test_tree import DEFAULT_MODEL_PROMPT

    ids = default_session.encode(DEFAULT_MODEL_PROMPT)
    request = Request("", ids, GenerationSettings(max_new_tokens=40), SamplingSettings())
    greedy = Greedy(default_session.target, Greedy.Options(), default_session.decoder.ctx)
    expected = greedy.generate(request).token_ids
    eagle2 = Eagle2(default_session.target, Eagle2Options(), default_session.decoder.ctx)
    result = eagle2.generate(request)
    assert result.token_ids == expected
    assert result.stats["mat"] > 1.0

"""Token recycling: the static template, the adjacency matrix and its breadth-first expansion on
hand-written data; token-identical to greedy on tiny models for many settings; lossless under
sampling; and MAT > 1 with identical tokens on the default model."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.speculative import tree
from decbench.decoders.speculative.recycling import (
    UNKNOWN,
    AdjacencyMatrix,
    RecyclingProposer,
    TokenRecycling,
    build_template,
    prune_unknown,
)
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conformance import assert_equals_greedy
from tests.conftest import make_request, no_models_ctx, repetitive_prompts
from tests.test_tree import sampling_matches_target


# -- the template ---------------------------------------------------------------------------
def test_template_is_breadth_first_and_favours_rank_zero():
    template = build_template(nodes=12, k=4, max_depth=4)
    assert len(template.parents) == 12
    depth = tree.depths(template.parents)  # also checks that parents come first
    assert depth == sorted(depth)  # breadth-first
    for start, end in template.levels:
        assert len(set(depth[start:end])) == 1
    first = template.ranks[slice(*template.levels[0])]
    assert first == list(range(len(first))) and len(first) >= 2  # the likeliest ranks, in order
    assert max(depth) == 4  # the rank-0 line runs to the depth limit
    line, node = [], 0
    while node < len(depth):  # follow rank 0 down from the first node
        line.append(node)
        node = next((i for i, p in enumerate(template.parents) if p == node), len(depth))
    assert len(line) == 4 and all(template.ranks[i] == 0 for i in line)
    # siblings are distinct ranks of their parent, so the tree never repeats a sibling token
    seen = {(p, r) for p, r in zip(template.parents, template.ranks, strict=True)}
    assert len(seen) == 12


def test_template_respects_depth_and_k():
    template = build_template(nodes=30, k=2, max_depth=2)
    assert len(template.parents) == 6  # 2 + 2 * 2: everything there is
    assert set(template.ranks) == {0, 1}


# -- the adjacency matrix ---------------------------------------------------------------------
def test_update_keeps_the_top_k_successors_of_each_input():
    matrix = AdjacencyMatrix(vocab=6, k=2)
    logits = torch.tensor([[0.0, 5, 1, 4, 0, 0], [3.0, 0, 0, 0, 9, 1]])
    matrix.update(torch.tensor([2, 5]), logits)
    assert matrix.table[2].tolist() == [1, 3]
    assert matrix.table[5].tolist() == [4, 0]
    assert matrix.table[0].tolist() == [UNKNOWN, UNKNOWN]
    assert matrix.stats() == {"adjacency_shape": [6, 2], "adjacency_bytes": 48, "rows_filled": 2}


def test_expansion_gathers_the_template_breadth_first_and_prunes_unknown_rows():
    matrix = AdjacencyMatrix(vocab=10, k=2)
    matrix.table[1] = torch.tensor([2, 3], dtype=torch.int32)  # after 1: 2 or 3
    matrix.table[2] = torch.tensor([4, 5], dtype=torch.int32)  # after 2: 4 or 5
    # 3 and 4 and 5 were never inputs: their rows are unknown
    template = build_template(nodes=6, k=2, max_depth=3)
    proposer = RecyclingProposer(matrix, template)
    draft = prune_unknown(proposer.expand(1), template.parents)
    paths = {
        tuple(draft.tokens[j] for j in path_of(draft.parents, node))
        for node in range(len(draft.tokens))
    }
    assert paths == {(2,), (3,), (2, 4), (2, 5)}
    assert draft.sources == ["adjacency"] * 4
    assert prune_unknown(proposer.expand(7), template.parents).tokens == []


def path_of(parents: list[int], node: int) -> list[int]:
    out = []
    while node != -1:
        out.append(node)
        node = parents[node]
    return out[::-1]


# -- lossless -------------------------------------------------------------------------------------
PROMPTS = repetitive_prompts(5, seed=4)


@pytest.mark.parametrize(
    "options",
    [
        dict(k=1, nodes=1, max_depth=1),
        dict(k=2, nodes=6, max_depth=3),
        dict(k=4, nodes=12, max_depth=6),
        dict(k=8, nodes=30, max_depth=8, persist=False),
        dict(k=3, nodes=10, max_depth=4, warm_start=False),
    ],
)
def test_recycling_equals_greedy(tiny_runner, options):
    decoder = TokenRecycling(tiny_runner, TokenRecycling.Options(**options), no_models_ctx())
    results = assert_equals_greedy(decoder, tiny_runner, PROMPTS)
    assert sum(r.stats["accepted"] for r in results) > 0  # not all rejected: not vacuous


def test_storage_is_reported_and_persists_across_requests(tiny_runner):
    decoder = TokenRecycling(tiny_runner, TokenRecycling.Options(k=4), no_models_ctx())
    first = decoder.generate(make_request(PROMPTS[0], 8)).stats["proposer"]
    second = decoder.generate(make_request(PROMPTS[1], 8)).stats["proposer"]
    vocab = tiny_runner.vocab_size
    assert first["adjacency_shape"] == [vocab, 4]
    assert first["adjacency_bytes"] == vocab * 4 * 4
    assert second["rows_filled"] >= first["rows_filled"] > 0
    assert first["warm_started"] is True


def test_sampling_preserves_the_distribution():
    options = TokenRecycling.Options(k=3, nodes=6, max_depth=3)

    def decoder_for(target):
        return TokenRecycling(target, options, no_models_ctx())

    sampling_matches_target(decoder_for)


def test_bad_options_are_config_errors(tiny_runner):
    for bad in (dict(k=0), dict(nodes=0), dict(max_depth=0), dict(k=10_000)):
        with pytest.raises(ConfigError, match="method\\."):
            TokenRecycling(tiny_runner, TokenRecycling.Options(**bad), no_models_ctx())


@pytest.mark.model
def test_recycling_on_the_default_model(default_session):
    from tests.test_tree import assert_default_model_speedup

    assert_default_model_speedup(default_session, TokenRecycling, SamplingSettings())


# -- the acceptance tree view -------------------------------------------------------------------
def rendered(renderable) -> str:
    import io

    from rich.console import Console

    console = Console(width=80, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def fake_result(tree_trace, emitted: int, bonus: int, recovered: bool):
    from decbench.results import GenerationResult, StepTrace, Timings

    steps = [
        StepTrace([], None, 0, 7, False, 1),  # the prefill's token: 7 is the first root
        StepTrace([], None, 0, 8, recovered, emitted, tree=tree_trace),
    ]
    return GenerationResult(
        "recycling", {}, "m", "", 3, [7, 1, 8], "", "length", Timings(0, 0, 0, 0, {}, 0), {}, steps
    )


def test_tree_view_marks_accepted_rejected_unreached_and_the_bonus():
    from decbench.cli.tree_render import acceptance_trees
    from decbench.results import TreeTrace

    # root 7: children 1 (accepted) and 2 (rejected, with child 3 never reached);
    # under 1: child 4 rejected; the target's bonus after 1 is 8
    trace = TreeTrace([1, 2, 3, 4], [-1, -1, 1, 0], ["pool", "jacobi", "jacobi", "pool"], [0])
    text = rendered(acceptance_trees(fake_result(trace, 2, 8, True), None, 3))
    assert "step 2 after '<7>' · 4 candidates · 1 accepted" in text
    assert "✓ '<1>'  [pool]" in text
    assert "✗ '<2>'  [jacobi]" in text
    assert "· '<3>'  [jacobi]" in text
    assert "✗ '<4>'  [pool]" in text
    assert "+ '<8>' (recovered)" in text
    assert text.index("✓ '<1>'") < text.index("✗ '<4>'") < text.index("+ '<8>'")


def test_tree_view_names_a_single_source_once_and_folds_large_trees():
    from decbench.cli.tree_render import FULL_TREE_NODES, acceptance_trees
    from decbench.results import TreeTrace

    n = FULL_TREE_NODES + 10  # a root child with a long untested line below a rejected one
    parents = [-1, -1, *range(1, n - 1)]
    trace = TreeTrace(list(range(10, 10 + n)), parents, ["adjacency"] * n, [0])
    text = rendered(acceptance_trees(fake_result(trace, 2, 8, False), None, 1))
    assert f"{n} candidates (adjacency)" in text
    assert "[adjacency]" not in text
    assert f"… {n - 2} more untested" in text  # all below the rejected node
    assert "+ '<8>' (bonus)" in text


@pytest.mark.model
def test_generate_show_tree_and_json(monkeypatch, capsys):
    import json

    from tests.test_cli import run_cli
    from tests.test_tree import DEFAULT_MODEL_PROMPT

    args = ("generate", DEFAULT_MODEL_PROMPT, "-m", "recycling", "-n", "24")
    code, out, err = run_cli(monkeypatch, capsys, *args, "--show-tree", "2")
    assert code == 0
    assert out.count("candidates (adjacency)") == 2
    assert "✓ accepted" in out and "MAT" in err
    code, out, _ = run_cli(monkeypatch, capsys, *args, "--json")
    trees = [step["tree"] for step in json.loads(out)["steps"] if step["tree"]]
    assert trees and set(trees[0]) == {"tokens", "parents", "sources", "accepted_path"}

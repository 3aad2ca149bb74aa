"""AdaDec: greedy at threshold inf (and with a single candidate), reranking at every step at
threshold 0 with the cost counted, and the rerank scores against independent full forwards."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.adadec import AdaDec, AdaDecOptions, rerank
from decbench.decoders.gated import GateCost, UncertainStep
from decbench.errors import ConfigError
from tests.conftest import (
    greedy_ids,
    make_request,
    no_models_ctx,
    runner_for,
    tiny_llama,
    tiny_qwen2,
)

PROMPT = [3, 4, 5, 6, 7, 3, 4]


def tiny_target(family: str = "llama"):
    make = tiny_qwen2 if family == "qwen2" else tiny_llama
    model = make(seed=0, layers=2)
    model.generation_config.eos_token_id = None  # no early stops: the counts below are exact
    return runner_for(model)


def adadec(target, **options):
    return AdaDec(target, AdaDecOptions(**options), no_models_ctx())


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_threshold_inf_is_greedy(family):
    target = tiny_target(family)
    result = adadec(target, threshold=float("inf")).generate(make_request(PROMPT, 16))
    assert result.token_ids == greedy_ids(target, PROMPT, 16)
    assert result.stats["uncertain_steps"] == 0 and result.stats["extra_forwards"] == 0


def test_one_candidate_is_greedy_even_when_it_fires():
    target = tiny_target()
    result = adadec(target, threshold=0.0, top_k=1).generate(make_request(PROMPT, 12))
    assert result.token_ids == greedy_ids(target, PROMPT, 12)
    assert result.stats["uncertain_steps"] == 12


def test_threshold_zero_reranks_every_step():
    """Every one of 10 steps fires; step i looks min(3, 10 - i - 1) tokens ahead."""
    target = tiny_target()
    result = adadec(target, threshold=0.0, top_k=3, lookahead=3).generate(make_request(PROMPT, 10))
    stats = result.stats
    assert stats["uncertain_steps"] == 10 and stats["uncertain_share"] == 1.0
    lookaheads = [min(3, 10 - i - 1) for i in range(10)]
    assert stats["extra_forwards"] == sum(lookaheads)
    # lookahead round r runs the tree of 3 candidates and their r - 1 lookahead tokens: 3r
    assert stats["extra_tokens"] == sum(3 * d * (d + 1) // 2 for d in lookaheads)
    assert result.token_ids != greedy_ids(target, PROMPT, 10)  # reranking really changed it


def test_rerank_scores_match_full_forwards():
    target = tiny_target()
    with torch.inference_mode():
        logits = target.prefill(torch.tensor([PROMPT])).logits[0, -1]
    step = UncertainStep(target, list(PROMPT), logits, 10, torch.Generator(), GateCost())
    chosen, scores = rerank(step, top_k=3, lookahead=2, eos=set())
    assert target.cache_len == len(PROMPT)
    candidates = logits.topk(3).indices.tolist()
    for candidate, score in zip(candidates, scores, strict=True):
        path = [candidate]
        with torch.inference_mode():
            for _ in range(2):  # the greedy lookahead, recomputed without the branch tree
                path.append(int(target.model(torch.tensor([PROMPT + path])).logits[0, -1].argmax()))
            full = target.model(torch.tensor([PROMPT + path])).logits[0].float().log_softmax(-1)
        total = logits.float().log_softmax(-1)[candidate].item()
        total += sum(full[len(PROMPT) + i, path[i + 1]].item() for i in range(2))
        assert score == pytest.approx(total / 3, abs=1e-4)
    assert chosen == candidates[max(range(3), key=scores.__getitem__)]


@pytest.mark.parametrize("bad", [{"threshold": float("nan")}, {"top_k": 0}, {"lookahead": -1}])
def test_bad_options_are_config_errors(bad):
    with pytest.raises(ConfigError, match="threshold" if "threshold" in bad else next(iter(bad))):
        adadec(tiny_target(), **bad)

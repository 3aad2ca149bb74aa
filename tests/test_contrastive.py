"""Contrastive search: alpha = 0 is greedy, the batched candidate forward equals k separate
full forwards, one forward per token, and bad settings are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decbench.decoders.contrastive import ContrastiveSearch, score_candidates
from decbench.errors import ConfigError
from decbench.metrics.quality import rep_n
from tests.conftest import greedy_ids, make_request, no_models_ctx, repetitive_prompts

PROMPTS = [[2, 3], [5, 9, 11, 4, 7, 30], list(range(2, 40)), *repetitive_prompts(3)]


def contrastive(runner, **options):
    return ContrastiveSearch(runner, ContrastiveSearch.Options(**options), no_models_ctx())


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("k", [1, 4, 8])
def test_alpha_zero_is_greedy(tiny_runner, prompt, k):
    got = contrastive(tiny_runner, k=k, alpha=0.0).generate(make_request(prompt, 24))
    assert got.token_ids == greedy_ids(tiny_runner, prompt, 24)
    assert got.stats["greedy_ratio"] == 1.0


def reference_contrastive(model, prompt: list[int], n: int, k: int, alpha: float) -> list[int]:
    """Contrastive search the slow, obvious way: for every candidate one full forward, no cache."""
    tokens = list(prompt)
    eos = model.config.eos_token_id
    with torch.inference_mode():
        for _ in range(n):
            out = model(torch.tensor([tokens]), output_hidden_states=True)
            context = F.normalize(out.hidden_states[-1][0].float(), dim=-1)  # [t, hidden]
            probs, candidates = out.logits[0, -1].float().softmax(-1).topk(k)
            scores = []
            for p, v in zip(probs.tolist(), candidates.tolist(), strict=True):
                h = model(torch.tensor([[*tokens, v]]), output_hidden_states=True).hidden_states
                h_v = F.normalize(h[-1][0, -1].float(), dim=-1)
                scores.append((1 - alpha) * p - alpha * (context @ h_v).max().item())
            tokens.append(candidates[max(range(k), key=scores.__getitem__)].item())
            if tokens[-1] == eos:
                break
    return tokens[len(prompt) :]


@pytest.mark.parametrize("alpha", [0.3, 0.6, 0.9])
def test_batched_candidates_equal_separate_forwards(tiny_runner, alpha):
    """The tree of k siblings plus cache compaction gives the same choices as running every
    candidate through its own full forward."""
    for prompt in PROMPTS[:4]:
        got = contrastive(tiny_runner, k=4, alpha=alpha).generate(make_request(prompt, 12))
        assert got.token_ids == reference_contrastive(tiny_runner.model, prompt, 12, 4, alpha)


def test_penalty_changes_the_output_and_lowers_repetition(tiny_runner):
    rep_greedy = rep_contrastive = 0.0
    changed = False
    for prompt in PROMPTS:
        greedy = greedy_ids(tiny_runner, prompt, 32)
        result = contrastive(tiny_runner, k=4, alpha=0.6).generate(make_request(prompt, 32))
        changed |= result.token_ids != greedy
        rep_greedy += rep_n(greedy, 2)
        rep_contrastive += rep_n(result.token_ids, 2)
        assert result.stats["greedy_ratio"] < 1.0 or result.token_ids == greedy
    assert changed
    assert rep_contrastive < rep_greedy


def test_one_forward_per_token(tiny_runner):
    result = contrastive(tiny_runner, k=5).generate(make_request([3, 4, 5], max_new_tokens=10))
    # prefill + one forward over the k candidates per generated token
    assert tiny_runner.forward_calls == 1 + len(result.token_ids)
    assert result.stats["mat"] == 1.0
    assert len(result.steps) == len(result.token_ids)


def test_score_candidates_by_hand():
    probs = torch.tensor([0.6, 0.3])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    context = torch.tensor([[1.0, 0.0]])  # the first candidate repeats the context exactly
    scores = score_candidates(probs, candidates, context, alpha=0.5)
    torch.testing.assert_close(scores, torch.tensor([0.5 * 0.6 - 0.5, 0.5 * 0.3 - 0.0]))


def test_refuses_bad_options(tiny_runner):
    with pytest.raises(ConfigError, match=r"method\.alpha"):
        contrastive(tiny_runner, alpha=1.5)
    with pytest.raises(ConfigError, match=r"method\.k"):
        contrastive(tiny_runner, k=0)


def test_profile_and_spec():
    from decbench.profiles import load_profile

    profile = load_profile("contrastive")
    assert profile.method == "contrastive"
    assert (profile.options.k, profile.options.alpha) == (4, 0.6)
    spec = ContrastiveSearch.spec
    assert not spec.lossless and not spec.samples and "greedy" in spec.lossless_note

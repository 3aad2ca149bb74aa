"""Quality metrics on hand-made token lists with values worked out by hand, coherence against a
plain forward, and (on the default model) the repetition ordering the open-ended methods exist
for."""

from __future__ import annotations

import json
import math

import pytest
import torch

from decbench.metrics.quality import (
    aggregate,
    agreement,
    coherence,
    corpus_distinct,
    distinct_n,
    diversity,
    first_divergence,
    quality_report,
    rep_n,
    text_metrics,
)
from tests.conftest import runner_for, tiny_llama


def test_rep_n_of_an_alternating_sequence():
    tokens = list("ababab")
    # bigrams ab ba ab ba ab: 5 in all, 2 distinct -> 100 * (1 - 2/5)
    assert rep_n(tokens, 2) == pytest.approx(60.0)
    # trigrams aba bab aba bab: 4 in all, 2 distinct
    assert rep_n(tokens, 3) == pytest.approx(50.0)
    # 4-grams abab baba abab: 3 in all, 2 distinct
    assert rep_n(tokens, 4) == pytest.approx(100 / 3)
    assert diversity(tokens) == pytest.approx(0.4 * 0.5 * (2 / 3))


def test_rep_n_of_a_sentence_of_words():
    words = ["the", "cat", "sat", "on", "the", "mat", "the", "cat", "sat"]
    # 8 bigrams; 'the cat' and 'cat sat' occur twice -> 6 distinct
    assert rep_n(words, 2) == pytest.approx(25.0)
    # 7 trigrams; 'the cat sat' twice -> 6 distinct
    assert rep_n(words, 3) == pytest.approx(100 * (1 - 6 / 7))
    # 6 four-grams, all distinct
    assert rep_n(words, 4) == 0.0


def test_no_repetition_and_too_short_sequences():
    assert rep_n([1, 2, 3, 4, 5], 2) == 0.0
    assert diversity([1, 2, 3, 4, 5]) == 1.0
    assert rep_n([1, 1, 1], 4) == 0.0  # no 4-gram at all
    assert rep_n([], 2) == 0.0
    assert rep_n([7, 7, 7, 7], 1) == pytest.approx(75.0)  # 4 unigrams, 1 distinct


def test_distinct_n_per_sequence_and_pooled():
    assert distinct_n([1, 1, 1, 2], 1) == pytest.approx(0.5)
    assert distinct_n([1, 1, 1, 2], 2) == pytest.approx(2 / 3)  # 11 11 12
    assert distinct_n([], 1) == 0.0
    # pooled: the same two tokens in both sequences -> 2 distinct of 4
    assert corpus_distinct([[1, 2], [1, 2]], 1) == pytest.approx(0.5)
    assert corpus_distinct([[1, 2], [3, 4]], 2) == pytest.approx(1.0)


def test_text_metrics_keys_and_length():
    metrics = text_metrics([5, 6, 5, 6, 5])
    assert metrics["length"] == 5
    assert metrics["rep_2"] == pytest.approx(50.0)  # 56 65 56 65
    assert set(metrics) == {
        "rep_2",
        "rep_3",
        "rep_4",
        "diversity",
        "distinct_1",
        "distinct_2",
        "length",
    }


def test_first_divergence_and_agreement():
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2
    assert first_divergence([1, 2], [1, 2, 3]) == 2  # a prefix diverges where it ends
    assert first_divergence([9], [1]) == 0
    assert agreement([1, 2, 3, 4], [1, 2, 0, 4]) == {
        "first_divergence": 2,
        "match_fraction": 0.75,
    }
    assert agreement([], []) == {"first_divergence": None, "match_fraction": 1.0}


def test_aggregate_means_and_identical_share():
    records = [
        {"rep_2": 10.0, "coherence": -1.0, "first_divergence": None, "match_fraction": 1.0},
        {"rep_2": 30.0, "coherence": None, "first_divergence": 4, "match_fraction": 0.5},
    ]
    agg = aggregate(records)
    assert agg["rep_2"] == pytest.approx(20.0)
    assert agg["coherence"] == pytest.approx(-1.0)  # None values are skipped
    assert agg["match_fraction"] == pytest.approx(0.75)
    assert agg["identical_to_greedy"] == pytest.approx(0.5)
    assert "first_divergence" not in agg


def test_coherence_is_the_mean_log_likelihood_of_the_continuation():
    runner = runner_for(tiny_llama())
    prompt, continuation = [4, 9, 13], [20, 7, 7, 31]
    with torch.inference_mode():
        logits = runner.model(torch.tensor([prompt + continuation])).logits[0].float()
    log_probs = logits.log_softmax(-1)
    # position i predicts token i + 1: the continuation starts after the last prompt token
    expected = sum(log_probs[2 + j, t].item() for j, t in enumerate(continuation)) / 4
    assert coherence(runner, prompt, continuation) == pytest.approx(expected, abs=1e-5)
    assert coherence(runner, prompt, []) is None
    assert runner.cache_len == 0  # scoring leaves no cache behind


def test_quality_report_adds_what_it_is_given():
    runner = runner_for(tiny_llama())
    report = quality_report([3, 4, 3, 4], prompt_ids=[5, 6], scorer=runner, greedy_ids=[3, 4, 5])
    assert report["first_divergence"] == 2
    assert math.isfinite(report["coherence"])
    assert "coherence" not in quality_report([3, 4])


OPEN_ENDED = "The history of the city begins in the twelfth century, when"


@pytest.mark.model
def test_open_ended_methods_repeat_less_than_greedy(default_session):
    """On the default model greedy loops; contrastive search and momentum decoding break the
    loop (the reason they exist)."""
    from decbench.profiles import method_profile
    from decbench.run import open_session

    reps = {}
    for method in ("greedy", "contrastive", "momentum"):
        overrides = [("generation", "max_new_tokens", 48), ("generation", "chat", False)]
        session = open_session(method_profile(method, overrides), target=default_session.target)
        result = session.generate(OPEN_ENDED)
        assert result.quality["length"] == len(result.token_ids)
        reps[method] = result.quality["rep_2"]
    assert reps["greedy"] > reps["contrastive"]
    assert reps["greedy"] > reps["momentum"]


@pytest.mark.model
def test_generate_json_carries_quality(monkeypatch, capsys):
    import sys

    from decbench.cli.app import main

    args = ["generate", OPEN_ENDED, "--raw", "-m", "momentum", "-n", "16", "--quality", "--json"]
    monkeypatch.setattr(sys, "argv", ["decbench", *args])
    main()
    quality = json.loads(capsys.readouterr().out)["quality"]
    assert quality["length"] == 16
    assert quality["coherence"] < 0
    assert "first_divergence" in quality  # momentum is lossy: compared with greedy
    assert 0.0 <= quality["match_fraction"] <= 1.0

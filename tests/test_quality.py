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
from tests.records import sample_record


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


# -- in compare ----------------------------------------------------------------------------------
def test_compare_reports_quality_per_method():
    """Every record carries per-turn quality scored under the target; the summary has the means,
    pooled distinct-n, and agreement with greedy for the lossy method only."""
    from decbench.compare import make_plan, run_compare
    from tests.tiny_sessions import contender, tiny_suite, tiny_target

    target = tiny_target()
    contenders = [
        contender("greedy", "greedy", target, max_new=16),
        contender("momentum", "momentum", target, max_new=16),
    ]
    plan = make_plan([c.profile for c in contenders], tiny_suite(), warmup=0)
    summary, records = run_compare(plan, contenders=contenders)
    for record in records:
        assert len(record.quality) == len(record.turns)
        for turn, ids in zip(record.quality, record.token_ids, strict=True):
            assert turn["length"] == len(ids)
            assert turn["rep_2"] == rep_n(ids, 2)
            assert turn["coherence"] < 0
    greedy = summary.overall("greedy").quality
    momentum = summary.overall("momentum").quality
    turns = [t for r in records if r.profile == "greedy" for t in r.quality]
    assert greedy.rep_2 == pytest.approx(sum(t["rep_2"] for t in turns) / len(turns))
    assert greedy.agreement_with_greedy is None  # greedy is lossless: nothing to agree with
    agreement_ = momentum.agreement_with_greedy
    assert agreement_.pairs == 3
    assert 0.0 <= agreement_.match_fraction <= 1.0
    assert greedy.rep_2 > momentum.rep_2  # the tiny model loops; momentum breaks loops
    assert 0 < momentum.corpus_distinct_2 <= 1
    # the human view: one row per profile, at 80 columns
    from rich.console import Console

    from decbench.cli.compare_render import quality_table

    console = Console(width=80, record=True)
    console.print(quality_table(summary))
    text = console.export_text()
    assert "rep-2" in text and "momentum" in text and f"{greedy.rep_2:.1f}" in text


def test_text_quality_on_hand_made_records():
    from decbench.compare.stats import text_quality

    def record(sample, ids, method="m"):
        quality = [text_metrics(ids)]
        return sample_record(
            method, sample, method=method, lossless=False, token_ids=[ids], quality=quality
        )

    greedy = {("s1", 0): record("s1", [1, 2, 1, 2]), ("s2", 0): record("s2", [5, 6, 7])}
    method = [record("s1", [1, 2, 3, 4]), record("s2", [5, 6, 7])]
    q = text_quality(method, greedy)
    assert q.rep_2 == 0.0
    assert q.length == 3.5
    assert q.corpus_distinct_1 == pytest.approx(7 / 7)
    assert q.agreement_with_greedy.to_json() == {
        "pairs": 2,
        "identical": 0.5,
        "match_fraction": pytest.approx((0.5 + 1.0) / 2),
        "first_divergence_median": 2.0,
        "answer_agreement": 1.0,  # both records answer "answer"
    }
    assert text_quality([sample_record(token_ids=[[1]])], None) is None


def test_open_ended_suite():
    from decbench.suites import DEFAULT_SUITE, get_suite

    suite = get_suite("open-ended")
    assert len(suite.samples) == 16 and suite.categories == ["open-ended"]
    assert all(s.turns[0].startswith("Write a") for s in suite.samples)
    assert "open-ended" not in get_suite(DEFAULT_SUITE).categories

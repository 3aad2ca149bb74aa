"""The `parallel` suite (ParallelBench-style exact answers), the exact-answer metric, and the
compare pieces of the dLLM trade-off: --sweep, and the accuracy-vs-forwards plot."""

from __future__ import annotations

import pytest

from decbench.compare.summary import CompareSummary
from decbench.compare.sweep import Sweep, expand, parse_sweep, variants
from decbench.errors import ConfigError
from decbench.metrics.quality import exact_answer, normalize_answer, quality_report
from decbench.suites import get_suite
from decbench.suites.parallel import KINDS, prompts, training_items
from tests.records import sample_record


def test_the_suite_has_every_kind_and_answers_computed_from_the_items():
    suite = get_suite("parallel")
    assert 24 <= len(suite.samples) <= 40
    assert {s.id.split("-", 2)[2] for s in suite.samples} == set(KINDS)
    by_kind = {s.id.split("-", 2)[2]: s for s in suite.samples}
    copy = by_kind["copy"]
    assert copy.turns[0].endswith(copy.reference[0])
    reverse = by_kind["reverse"]
    listed = reverse.turns[0].split(": ", 1)[1].split(", ")
    assert reverse.reference[0] == ", ".join(reversed(listed))
    add = by_kind["add"]
    a, b = (int(x) for x in add.turns[0].split("?")[0].split("is ")[1].split(" + "))
    assert add.reference[0] == str(a + b)
    assert len({s.turns[0] for s in suite.samples}) == len(suite.samples)


def test_every_reference_scores_one_and_a_wrong_answer_zero():
    samples = get_suite("parallel").samples
    for sample in samples:
        assert exact_answer(sample.reference[0], sample.reference) == 1.0, sample.id
        assert exact_answer(sample.reference[0] + ".\nMore text.", sample.reference) == 1.0
    for sample, other in zip(samples, samples[8:], strict=False):  # another kind's answer
        if normalize_answer(other.reference[0]) not in normalize_answer(sample.reference[0]):
            assert exact_answer(other.reference[0], sample.reference) == 0.0, sample.id
    assert exact_answer("", "42") == 0.0


@pytest.mark.parametrize(
    "output,reference,score",
    [
        ("42", "42", 1.0),
        ("  The answer is 42.  ", "42", 1.0),
        ("**YES**", "YES", 1.0),
        ("yes!", "YES", 1.0),
        ("420", "42", 0.0),
        ("4, 2", "42", 0.0),
        ("\n\nspoon, falcon, wagon\n", "spoon, falcon, wagon", 1.0),
        ("wagon, falcon, spoon", "spoon, falcon, wagon", 0.0),
        ("first line\n42", "42", 0.0),  # the answer must be on the first line
        ("NO", ("no", "n"), 1.0),
    ],
)
def test_exact_answer_normalises_and_looks_at_the_first_line(output, reference, score):
    assert exact_answer(output, reference) == score


def test_quality_report_carries_exact_answer_only_with_a_reference():
    assert quality_report([5, 6], text="42", answer="42")["exact_answer"] == 1.0
    assert "exact_answer" not in quality_report([5, 6], text="42")


def test_training_items_are_fresh():
    held = {p for _, p, _ in prompts()}
    train = training_items(200)
    assert len(train) == 200 and not held & {p for p, _ in train}


def test_parse_sweep_and_its_errors():
    assert parse_sweep("method.threshold=0.5, 0.9") == Sweep("method", "threshold", ("0.5", "0.9"))
    for bad in (
        "threshold=0.5",
        "method.threshold",
        "method.threshold=",
        "nope.k=1",
        ":method.k=1",
    ):
        with pytest.raises(ConfigError, match="--sweep"):
            parse_sweep(bad)


def test_sweeps_expand_the_profiles_that_have_the_key():
    from decbench.cli.options import build_profile

    def build(name, extra):
        return build_profile(name, None, extra)

    sweeps = [parse_sweep("method.threshold=0.5,0.9")]
    profiles, labels = expand(["greedy", "dllm-threshold", "dllm-credit"], build, sweeps)
    assert labels == [
        "greedy",
        "dllm-threshold[threshold=0.5]",
        "dllm-threshold[threshold=0.9]",
        "dllm-credit[threshold=0.5]",
        "dllm-credit[threshold=0.9]",
    ]
    assert [p.options.threshold for p in profiles[1:3]] == [0.5, 0.9]
    prophet = build("dllm-prophet", [])
    together = [parse_sweep("method.early_threshold=3,6"), parse_sweep("method.late_threshold=1,2")]
    assert [s for s, _ in variants(prophet, together)] == [
        "[early_threshold=3,late_threshold=1]",
        "[early_threshold=6,late_threshold=2]",
    ]
    with pytest.raises(ConfigError, match="same number"):
        variants(prophet, [together[0], parse_sweep("method.late_threshold=1")])
    with pytest.raises(ConfigError, match="no profile has"):
        expand(["greedy"], build, sweeps)
    only = [parse_sweep("dllm-confidence:method.tokens_per_step=1,2")]
    assert only[0].only == "dllm-confidence"
    _, labels = expand(["dllm-confidence", "dllm-freedave"], build, only)
    assert labels == [
        "dllm-confidence[tokens_per_step=1]",
        "dllm-confidence[tokens_per_step=2]",
        "dllm-freedave",
    ]


def tradeoff_summary() -> CompareSummary:
    from decbench.compare.stats import TextQuality
    from tests.records import compare_summary, group_metrics

    def result(forwards, accuracy):
        quality = TextQuality(exact_answer=accuracy)
        return group_metrics(forward_calls_per_token=forwards, quality=quality)

    labels = {
        "greedy": ("greedy", 1.0, 0.6),
        "dllm-threshold[threshold=0.5]": ("dllm-threshold", 0.4, 0.3),
        "dllm-threshold[threshold=0.9]": ("dllm-threshold", 0.8, 0.5),
    }
    return compare_summary({k: (m, result(f, a)) for k, (m, f, a) in labels.items()})


def test_the_tradeoff_plot_is_drawn_when_the_suite_has_answers(tmp_path):
    pytest.importorskip("matplotlib")
    from decbench.compare import plot

    summary = tradeoff_summary()
    assert plot.knob_values("dllm-prophet[early_threshold=1.9,late_threshold=0.6]") == "1.9/0.6"
    assert plot.knob_values("greedy") == ""
    assert [p[2:] for p in plot.tradeoff_points(summary)] == [(1.0, 0.6), (0.4, 0.3), (0.8, 0.5)]
    path = plot.plot_summary(summary, tmp_path / "dllm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match=r"use a \.png"):
        plot.plot_tradeoff(summary, tmp_path / "dllm.bmp")
    for result in summary.results.values():
        result.overall.quality = None
    with pytest.raises(ConfigError, match="exact-answer"):
        plot.plot_tradeoff(summary, tmp_path / "none.png")


def test_answer_agreement_with_greedy_compares_normalised_first_lines():
    from decbench.compare.stats import text_quality

    def record(sample, ids, text):
        quality = [quality_report(ids)]
        return sample_record(
            "m", sample, token_ids=[ids], turns=[text], quality=quality, lossless=False
        )

    greedy = {("s1", 0): record("s1", [1, 2], "Paris."), ("s2", 0): record("s2", [5], "42")}
    method = [record("s1", [1, 3], "paris\nmore"), record("s2", [6], "41")]
    agreement = text_quality(method, greedy).agreement_with_greedy
    assert agreement.answer_agreement == 0.5 and agreement.identical == 0.0

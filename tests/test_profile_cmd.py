"""profile: the analytic model of Leviathan et al. (2023) on hand-computed values, the verify
curve, the phase breakdown, the torch profiler trace, and one run of the command."""

from __future__ import annotations

import json
import sys

import pytest

from decbench.cli.app import main
from decbench.compare import make_plan, run_compare
from decbench.compare.profiling import (
    SCHEMA_PROFILE,
    Prediction,
    TracingTimer,
    VerifyPoint,
    baseline_profile,
    expected_tokens_per_step,
    export_trace,
    interpolate,
    leviathan_speedup,
    phase_breakdown,
    predict,
    report,
    traced_phases,
    verify_cost_curve,
)
from decbench.metrics.acceptance import AcceptanceStats
from decbench.profiles import method_profile
from tests.records import sample_record
from tests.tiny_sessions import contender, tiny_suite, tiny_target


def test_expected_tokens_per_step():
    # alpha = 0.8, k = 4: (1 - 0.8^5) / 0.2 = 3.3616
    assert expected_tokens_per_step(0.8, 4) == pytest.approx(3.3616)
    assert expected_tokens_per_step(0.0, 4) == 1.0  # every draft rejected: the bonus token only
    assert expected_tokens_per_step(1.0, 4) == 5.0  # every draft accepted, plus the bonus
    # c = 0.05: 3.3616 / (4 * 0.05 + 1)
    assert leviathan_speedup(0.8, 4, 0.05) == pytest.approx(3.3616 / 1.2)


def curve(ms_per_token: list[float]) -> list[VerifyPoint]:
    first = ms_per_token[0]
    return [VerifyPoint(n, ms, ms, ms, ms / first) for n, ms in enumerate(ms_per_token, start=1)]


def test_interpolate_and_extrapolate():
    c = curve([10.0, 12.0, 14.0])
    assert interpolate(c, 1) == pytest.approx(0.010)
    assert interpolate(c, 2.5) == pytest.approx(0.013)
    assert interpolate(c, 5) == pytest.approx(0.018)  # extends the last slope


def test_predict_from_trace_totals():
    """10 steps, 8 of them drafted 4 tokens each (32 drafted); 16 accepted; 6 steps rejected a
    token, so alpha = 16 / (16 + 6). Draft time 0.032 s = 1 ms per drafted token; T(1) = 10 ms,
    so c = 0.1. The target verified 1 + 4 tokens on drafting steps and 1 on the others."""
    totals = {
        "steps": 10,
        "drafted": 32,
        "accepted": 16,
        "rejected_steps": 6,
        "drafted_steps": 8,
        "verified_tokens": 8 * 5 + 2,
    }
    p = predict(
        AcceptanceStats.from_totals(totals),
        draft_s=0.032,
        curve=curve([10.0, 11.0, 12.0, 13.0, 14.0]),
    )
    alpha = 16 / 22
    e = 0.8 * expected_tokens_per_step(alpha, 4) + 0.2
    assert p.alpha == pytest.approx(alpha)
    assert p.k == 4 and p.drafting_share == 0.8
    assert p.c == pytest.approx(0.1)
    assert p.expected_tokens_per_step == pytest.approx(e)
    assert p.leviathan_speedup == pytest.approx(e / (0.8 * 4 * 0.1 + 1))
    # verify-aware: per step 3.2 ms of drafting plus T(4.2) = 13.2 ms, against T(1) per token
    assert p.mean_verified_tokens == pytest.approx(4.2)
    assert p.verify_aware_speedup == pytest.approx(e * 0.010 / (0.0032 + 0.0132))


def test_predict_without_drafts():
    totals = {
        "steps": 5,
        "drafted": 0,
        "accepted": 0,
        "rejected_steps": 0,
        "drafted_steps": 0,
        "verified_tokens": 5,
    }
    p = predict(AcceptanceStats.from_totals(totals), 0.0, curve([10.0]))
    assert p == Prediction(drafts=False, expected_tokens_per_step=1.0, leviathan_speedup=1.0)
    assert list(p.to_json())[:3] == ["drafts", "expected_tokens_per_step", "leviathan_speedup"]


def test_phase_breakdown_and_positions():
    phases = {"prefill": 0.2, "verify": 0.5, "draft": 0.1, "tokenize": 0.05}
    records = [sample_record(wall_time=[1.0], token_ids=[list(range(10))], phases=phases)]
    phases = phase_breakdown(records)
    assert next(iter(phases)) == "verify"
    assert phases["other"].seconds == pytest.approx(0.2)  # 1.0 - (0.2 + 0.5 + 0.1)
    assert phases["verify"].ms_per_token == pytest.approx(50.0)
    assert sum(p.share for p in phases.values()) == pytest.approx(1.0)
    counts = {"position_offered": [4, 2, 0], "position_accepted": [3, 1, 0]}
    rows = AcceptanceStats.from_totals(counts).position_table()
    assert [r.rate for r in rows] == [0.75, 0.5, None]


def test_baseline_profile_keeps_settings():
    pld = method_profile("pld", [("generation", "max_new_tokens", 9)])
    base = baseline_profile(pld)
    assert base.method == "greedy" and base.generation == pld.generation
    sampled = method_profile("pld", [("sampling", "temperature", 0.7)])
    assert baseline_profile(sampled).method == "sample"


def test_verify_cost_curve_restores_the_cache():
    target = tiny_target()
    rows = verify_cost_curve(target, [3, 4, 5, 6], max_tokens=6, repeats=2)
    assert [r.tokens for r in rows] == list(range(1, 7))
    assert rows[0].relative == 1.0
    assert all(r.min_ms <= r.median_ms <= r.max_ms for r in rows)
    assert target.cache_len == 4


def test_report_and_trace(tmp_path):
    target = tiny_target()
    contenders = [contender("greedy", "greedy", target), contender("pld", "pld", target, k=4)]
    plan = make_plan([c.profile for c in contenders], tiny_suite())
    summary, records = run_compare(plan, contenders=contenders)
    rows = verify_cost_curve(target, [3, 4, 5], max_tokens=5, repeats=1)
    trace = export_trace(contenders[1], "abcabcabc abc", tmp_path / "t" / "trace.json")
    doc = json.loads(json.dumps(report("pld", summary, records, rows, trace).to_json()))
    assert doc["schema"] == SCHEMA_PROFILE
    assert doc["baseline"] == "greedy" and doc["runs"] == 3
    assert {"verify", "prefill", "other"} <= set(doc["phases"])
    assert doc["prediction"]["measured_speedup"]["n"] == 3
    assert doc["exact_match"]["rate"] == 1.0
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") == "decbench.verify" for e in events)
    assert type(target.timer) is not TracingTimer  # the tracing timer was swapped back


def test_traced_phases_restores_on_error():
    target = tiny_target()
    saved = target.timer
    with pytest.raises(RuntimeError), traced_phases(target):
        assert isinstance(target.timer, TracingTimer)
        raise RuntimeError
    assert target.timer is saved


@pytest.mark.model
def test_profile_command(monkeypatch, capsys, tmp_path):
    args = [
        "decbench",
        "profile",
        "pld",
        "--prompt",
        "Repeat exactly: one two three four five six.",
        "-n",
        "12",
        "--verify-max",
        "3",
        "--verify-repeats",
        "1",
        "--json",
    ]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exit_info:
        main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    doc = json.loads(captured.out)
    assert doc["schema"] == SCHEMA_PROFILE
    assert [row["tokens"] for row in doc["verify_cost"]] == [1, 2, 3]
    assert doc["prediction"]["leviathan_speedup"] > 0
    assert doc["exact_match"]["rate"] == 1.0

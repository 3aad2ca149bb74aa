"""Divergence diagnosis (compare/divergence.py): where a method left the baseline, both tokens
there, and whether the target's logits made it a near-tie."""

from __future__ import annotations

import torch

from decbench.cli.compare_render import divergences
from decbench.compare import divergence as dv
from decbench.compare import make_plan, run_compare
from decbench.compare.conversation import encode_turn
from decbench.jsonrecord import ABSENT
from decbench.profiles import method_profile
from tests.records import sample_record
from tests.tiny_sessions import contender, tiny_suite, tiny_target

GREEDY = method_profile("greedy", [("generation", "max_new_tokens", 12)])


def test_first_difference_over_turns_and_lengths():
    assert dv.first_difference([[1, 2], [3, 4]], [[1, 2], [3, 4]]) is None
    assert dv.first_difference([[1, 2], [3, 5]], [[1, 2], [3, 4]]) == (1, 1)
    assert dv.first_difference([[1, 2]], [[1, 2, 7]]) == (0, 2)
    assert dv.first_difference([[9]], [[1, 2]]) == (0, 0)


def run_pair(method_target, repeat=1):
    base_target = tiny_target(seed=0)
    contenders = [
        contender("greedy", "greedy", base_target),
        contender("greedy-2", "greedy", method_target),
    ]
    plan = make_plan([c.profile for c in contenders], tiny_suite(), repeat=repeat, warmup=0)
    summary, records = run_compare(plan, contenders=contenders)
    return base_target, summary, records


def test_a_real_divergence_is_not_a_near_tie():
    base_target, summary, records = run_pair(tiny_target(seed=1))
    base = {r.sample_id: r for r in records if r.profile == "greedy"}
    others = [r for r in records if r.profile == "greedy-2"]
    assert all(r.divergence for r in others)  # another model: every sample differs
    assert all(r.divergence is ABSENT for r in base.values())
    assert all("divergence" not in r.to_json() for r in base.values())
    for record in others:
        d = record.divergence
        theirs = base[record.sample_id]
        assert d.against == "greedy"
        assert d.baseline_token == theirs.token_ids[d.turn][d.position]
        assert d.token == record.token_ids[d.turn][d.position]
        if d.turn == 0:  # the baseline's own logits there, recomputed independently
            prompt = encode_turn(base_target, GREEDY, theirs.prompts[:1], [])
            ids = prompt + theirs.token_ids[0][: d.position]
            with torch.inference_mode():
                logits = base_target.model(torch.tensor([ids])).logits[0, -1]
            assert logits.argmax().item() == d.baseline_token
            expected = (logits[d.baseline_token] - logits[d.token]).item()
            assert abs(d.gap - expected) < 1e-4
        assert d.gap >= d.margin - 1e-6 > 0
        assert d.near_tie is False
    first = summary.overall("greedy-2").exact_match.first_divergence
    assert first.not_near_ties == len(others) and first.near_ties == 0
    line = divergences(summary).plain
    assert line.startswith(f"greedy-2: {len(others)} divergences: 0 near-ties")
    assert "logit gap" in line


def test_near_tie_is_reported_as_such(monkeypatch):
    def flat(target, ids):  # every token ties: whatever the two runs picked is a near-tie
        return torch.full((target.vocab_size,), 3.0)

    monkeypatch.setattr(dv, "step_logits", flat)
    _, summary, records = run_pair(tiny_target(seed=1))
    diagnosed = [r.divergence for r in records if r.divergence]
    assert diagnosed and all(d.near_tie and d.margin == 0 for d in diagnosed)
    n = len(diagnosed)
    assert (
        divergences(summary).plain == f"greedy-2: {n} divergences, all near-ties (margin < 0.001)"
    )


def test_identical_runs_and_sampled_runs_get_no_diagnosis():
    same = tiny_target(seed=0)
    _, summary, records = run_pair(same)
    assert all(not r.divergence for r in records)
    assert divergences(summary) is None
    record = sample_record(sampling={"temperature": 0.7}, token_ids=[[1]])
    assert dv.diagnose(record, sample_record(token_ids=[[2]]), same, None) is None


def test_all_near_ties_line():
    from decbench.compare.stats import DivergedPair, ExactMatch, first_divergences
    from tests.records import compare_summary, group_metrics

    tie = dv.Divergence(0, 3, 3, 5, 6, 0.0, 0.0, near_tie=True, against="greedy")
    first = first_divergences([DivergedPair("a", 0, 3, tie)] * 3, [3, 3, 3])
    match = ExactMatch(rate=0.0, matched=0, pairs=3, first_divergence=first)
    summary = compare_summary(
        {"greedy": ("greedy", group_metrics()), "pld": ("pld", group_metrics(exact_match=match))}
    )
    assert divergences(summary).plain == "pld: 3 divergences, all near-ties (margin < 0.001)"

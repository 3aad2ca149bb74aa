"""bench/run.py's plan reading and goal reports: every goal of the shipped plan is judged and
printed (a goal may state only an exact-match rate, as json-constrained's does), and malformed
goals are refused when the plan is read, before any comparison runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from decbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(speedup: float | None, exact: float | None) -> dict:
    return {"speedup_median": speedup, "exact_match": exact}


def test_every_goal_of_the_shipped_plan_is_judged_and_printed(bench):
    _, comparisons = bench.read_plan(ROOT / "bench" / "plan.toml")
    goals = [c["goal"] for c in comparisons if "goal" in c]
    assert any("speedup" not in g for g in goals)  # the case that once crashed the table
    for goal in goals:
        judged = bench.judge_goal(goal, row(1.2, 1.0))
        text = bench.goal_text(judged)
        assert text.startswith(f"{goal['profile']}: ") and text.endswith(("met", "NOT met"))


@pytest.mark.parametrize(
    ("goal", "measured", "met"),
    [
        ({"profile": "p", "speedup": 1.5}, row(1.6, 0.5), True),
        ({"profile": "p", "speedup": 1.5}, row(1.4, 1.0), False),
        ({"profile": "p", "exact_match": 1.0}, row(0.9, 1.0), True),
        ({"profile": "p", "exact_match": 1.0}, row(2.0, 0.875), False),
        ({"profile": "p", "speedup": 1.5, "exact_match": 1.0}, row(1.6, 0.875), False),
        ({"profile": "p", "speedup": 1.5, "exact_match": 1.0}, row(1.6, 1.0), True),
        ({"profile": "p", "speedup": 1.5}, row(None, None), False),  # the baseline itself
    ],
)
def test_a_goal_is_met_only_when_every_stated_part_is(bench, goal, measured, met):
    judged = bench.judge_goal(goal, measured)
    assert judged["met"] is met
    assert bench.goal_text(judged).endswith(": met" if met else ": NOT met")


def test_goal_text_names_what_the_goal_states(bench):
    both = {"profile": "eagle", "speedup": 1.8, "exact_match": 1.0, "met": False}
    assert bench.goal_text(both) == "eagle: speedup >= 1.8x, exact match >= 100%: NOT met"
    exact = {"profile": "pld-json", "exact_match": 1.0, "met": True}
    assert bench.goal_text(exact) == "pld-json: exact match >= 100%: met"


@pytest.mark.parametrize(
    ("goal", "message"),
    [
        ('{ profile = "pld" }', "a goal needs 'profile' and 'speedup' or 'exact_match'"),
        ("{ speedup = 1.5 }", "a goal needs 'profile'"),
        ('{ profile = "pld", speedpu = 1.5 }', "unknown goal key 'speedpu'"),
        ('{ profile = "pld", speedup = "1.5" }', "goal.speedup: expected a number"),
        ("{ profile = 3, speedup = 1.5 }", "goal.profile: expected a string"),
    ],
)
def test_a_malformed_goal_is_refused_when_the_plan_is_read(bench, tmp_path, goal, message):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[[comparison]]\nname = "x"\nprofiles = ["greedy", "pld"]\ngoal = {goal}\n')
    with pytest.raises(ConfigError, match=message):
        bench.read_plan(plan)


def test_a_goal_naming_no_profile_of_its_comparison_is_refused_before_running(bench, tmp_path):
    entry = {"name": "x", "profiles": ["greedy", "pld"], "goal": {"profile": "pdl", "speedup": 2}}
    entry |= {"max_new_tokens": 8, "limit": 1}
    plan = bench.entry_plan(entry, tmp_path)
    with pytest.raises(ConfigError, match=r"unknown goal profile 'pdl'.*did you mean 'pld'"):
        bench.check_goal_profile(entry, plan)
    entry["goal"]["profile"] = "pld"
    bench.check_goal_profile(entry, plan)


def test_every_goal_of_the_shipped_plan_names_one_of_its_profiles(bench):
    plan = ROOT / "bench" / "plan.toml"
    for entry in bench.read_plan(plan)[1]:
        bench.check_goal_profile(entry, bench.entry_plan(entry, plan.parent))

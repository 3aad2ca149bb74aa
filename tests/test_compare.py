"""compare: the paired-speedup arithmetic on synthetic records, interleaving, multi-turn turns
that follow the model's own answers, durable records that survive an interruption and resume,
the summary schema, and one end-to-end run on the default model."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from decbench.cli.app import app, main
from decbench.compare import (
    SCHEMA_COMPARE,
    SCHEMA_SAMPLE,
    Event,
    RunStore,
    make_plan,
    run_compare,
    summarize,
)
from decbench.compare.conversation import encode_turn
from decbench.compare.harness import check_comparable, unique_labels
from decbench.compare.stats import aggregate, exact_match, pair_speedups, spread, total_speedup
from decbench.compare.store import read_records
from decbench.errors import ConfigError
from decbench.profiles import method_profile
from decbench.suites import get_suite
from tests.records import sample_record
from tests.tiny_sessions import ByteTokenizer, contender, tiny_suite, tiny_target


# -- arithmetic on synthetic records -----------------------------------------------------------
def rec(
    profile,
    sample,
    repeat,
    tokens,
    seconds,
    ids=None,
    category="c",
    steps=None,
    drafted=0,
    accepted=0,
    forwards=None,
):
    return sample_record(
        profile,
        sample,
        repeat,
        category=category,
        new_tokens=[tokens],
        wall_time=[seconds],
        token_ids=[ids if ids is not None else list(range(tokens))],
        stats={
            "steps": steps or tokens,
            "emitted": tokens,
            "drafted": drafted,
            "accepted": accepted,
        },
        forward_calls=[forwards if forwards is not None else tokens],
    )


def test_spread():
    s = spread([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s.median, s.min, s.max, s.n) == (3.0, 1.0, 100.0, 5)
    assert (s.q1, s.q3) == (2.0, 4.0)
    assert spread([]) is None


def test_paired_speedup_is_the_ratio_of_tokens_per_second_per_pair():
    base = {("s1", 0): rec("b", "s1", 0, 10, 2.0), ("s2", 0): rec("b", "s2", 0, 20, 2.0)}
    method = [
        rec("m", "s1", 0, 10, 1.0),  # 10 tok/s vs 5 tok/s: 2x
        rec("m", "s2", 0, 20, 4.0),  # 5 vs 10: 0.5x
        rec("m", "s3", 0, 20, 1.0),  # no baseline run: unpaired, skipped
    ]
    assert pair_speedups(method, base) == [2.0, 0.5]
    # ratio of aggregate throughput over the pairs: (30/5) / (30/4)
    assert total_speedup(method, base) == pytest.approx(0.8)
    # a machine that slows down for both halves of a pair cancels out
    drift = [rec("m", "s1", 0, 10, 3.0)]
    slow_base = {("s1", 0): rec("b", "s1", 0, 10, 6.0)}
    assert pair_speedups(drift, slow_base) == [2.0]


def test_pairs_are_per_repeat():
    base = {("s", 0): rec("b", "s", 0, 10, 1.0), ("s", 1): rec("b", "s", 1, 10, 2.0)}
    method = [rec("m", "s", 0, 10, 1.0), rec("m", "s", 1, 10, 1.0)]
    assert pair_speedups(method, base) == [1.0, 2.0]


def test_exact_match_and_first_divergence():
    base = {
        ("s1", 0): rec("b", "s1", 0, 5, 1.0, ids=[1, 2, 3, 4, 5]),
        ("s2", 0): rec("b", "s2", 0, 5, 1.0, ids=[1, 2, 3, 4, 5]),
        ("s3", 0): rec("b", "s3", 0, 5, 1.0, ids=[1, 2, 3, 4, 5]),
    }
    method = [
        rec("m", "s1", 0, 5, 1.0, ids=[1, 2, 3, 4, 5]),
        rec("m", "s2", 0, 5, 1.0, ids=[1, 2, 9, 4, 5]),
        rec("m", "s3", 0, 3, 1.0, ids=[1, 2, 3]),  # stopped early: diverges at its length
    ]
    match = exact_match(method, base)
    assert match.rate == pytest.approx(1 / 3)
    assert (match.matched, match.pairs) == (1, 3)
    assert match.first_divergence.min == 2
    assert [d.index for d in match.first_divergence.diverged] == [2, 3]


def test_multi_turn_divergence_counts_over_all_turns():
    b = rec("b", "s", 0, 4, 1.0)
    b.token_ids = [[1, 2], [3, 4]]
    m = rec("m", "s", 0, 4, 1.0)
    m.token_ids = [[1, 2], [3, 7]]
    assert exact_match([m], {("s", 0): b}).first_divergence.min == 3


def test_aggregate_per_category_and_overall():
    records = [
        rec("b", "x1", 0, 10, 1.0, category="x"),
        rec("m", "x1", 0, 10, 0.5, category="x", steps=4, drafted=12, accepted=6),
        rec("b", "y1", 0, 10, 1.0, category="y"),
        rec("m", "y1", 0, 10, 1.0, category="y", steps=10, drafted=4, accepted=0),
    ]
    results = aggregate(records, ["b", "m"], "b", ["x", "y"])
    assert results["b"].overall.speedup is None
    assert results["b"].overall.exact_match is None
    m = results["m"]
    assert m.categories["x"].speedup.median == 2.0
    assert m.categories["y"].speedup.median == 1.0
    assert m.overall.speedup.median == 1.5
    assert m.categories["x"].mat == 2.5  # 10 tokens in 4 steps
    assert m.overall.mat == pytest.approx(20 / 14)
    assert m.overall.acceptance_rate == pytest.approx(6 / 16)
    assert m.overall.exact_match.rate == 1.0
    assert m.overall.tokens_per_s.median == 15.0


def test_forwards_per_token_are_pooled_per_category_and_overall():
    records = [
        rec("m", "x1", 0, 10, 1.0, category="x", forwards=10),  # 1 forward per token
        rec("m", "x2", 0, 30, 1.0, category="x", forwards=10),  # 3 tokens per forward
        rec("m", "y1", 0, 8, 1.0, category="y", forwards=2),
        rec("m", "z1", 0, 0, 1.0, category="z", forwards=0),  # nothing generated
    ]
    records[2].new_tokens = [5, 3]  # two turns: forwards and tokens sum over both
    records[2].forward_calls = [1, 1]
    results = aggregate(records, ["m"], "m", ["x", "y", "z", "empty"])["m"]
    x = results.categories["x"]
    # pooled: 20 forwards / 40 tokens, not the mean of the per-record ratios (1 + 1/3) / 2
    assert (x.forward_calls, x.forward_calls_per_token) == (20, 0.5)
    assert results.categories["y"].forward_calls_per_token == 0.25
    assert results.categories["z"].forward_calls_per_token is None  # 0 / 0
    assert results.categories["empty"].forward_calls == 0
    assert results.categories["empty"].forward_calls_per_token is None
    overall = results.overall
    assert (overall.forward_calls, overall.tokens) == (22, 48)
    assert overall.forward_calls_per_token == 22 / 48


def test_records_without_forward_calls_give_no_ratio():
    old = rec("m", "x1", 0, 10, 1.0)
    old.forward_calls = None  # written before decbench counted forwards
    metrics = aggregate([old, rec("m", "x2", 0, 10, 1.0)], ["m"], "m", ["c"])["m"].overall
    assert metrics.forward_calls is None and metrics.forward_calls_per_token is None


# -- planning -------------------------------------------------------------------------------------
def test_labels_are_unique_and_stop_rules_must_match():
    a = method_profile("greedy")
    b = method_profile("greedy")
    assert unique_labels([a, b, method_profile("pld")]) == ["greedy", "greedy-2", "pld"]
    short = method_profile("pld", [("generation", "max_new_tokens", 7)])
    with pytest.raises(
        ConfigError, match=r"differ in generation\.max_new_tokens \(greedy: 128, pld: 7\)"
    ):
        check_comparable(["greedy", "pld"], [a, short])
    threads = method_profile("pld", [("backend", "threads", 2)])
    with pytest.raises(ConfigError, match=r"different backend\.threads"):
        check_comparable(["greedy", "pld"], [a, threads])


def test_plan_validates_baseline_and_counts():
    profiles = [method_profile("greedy"), method_profile("pld")]
    with pytest.raises(ConfigError, match="unknown baseline 'pdl'; did you mean 'pld'"):
        make_plan(profiles, tiny_suite(), baseline="pdl")
    with pytest.raises(ConfigError, match="--repeat must be >= 1"):
        make_plan(profiles, tiny_suite(), repeat=0)
    plan = make_plan(profiles, tiny_suite(), baseline="pld", repeat=2)
    assert plan.baseline == "pld" and len(plan.samples) == 3


# -- the loop on tiny models ------------------------------------------------------------------------
@pytest.fixture
def tiny_contenders():
    target = tiny_target()
    return [contender("greedy", "greedy", target), contender("pld", "pld", target, k=4)]


def tiny_plan(contenders, repeat=1):
    return make_plan([c.profile for c in contenders], tiny_suite(), repeat=repeat, warmup=1)


def test_interleaved_records_with_spec_bench_fields(tiny_contenders):
    plan = tiny_plan(tiny_contenders, repeat=2)
    summary, records = run_compare(plan, contenders=tiny_contenders)
    order = [(r.repeat, r.sample_id, r.profile) for r in records]
    assert order[:4] == [
        (0, "a-1", "greedy"),
        (0, "a-1", "pld"),
        (0, "a-2", "greedy"),
        (0, "a-2", "pld"),
    ]
    assert len(records) == 2 * 3 * 2
    for r in records:
        assert r.schema == SCHEMA_SAMPLE
        turns = len(r.prompts)
        for field in (
            "turns",
            "new_tokens",
            "wall_time",
            "decoding_steps",
            "token_ids",
            "finish_reasons",
        ):
            assert len(getattr(r, field)) == turns, field
        assert r.new_tokens == [len(ids) for ids in r.token_ids]
        assert sum(r.accept_lengths) == sum(r.new_tokens)
        assert len(r.accept_lengths) == sum(r.decoding_steps)
        assert r.stats.emitted == sum(r.new_tokens)
        json.dumps(r.to_json())  # plain data
    # greedy is lossless for PLD: every pair identical
    assert summary.overall("pld").exact_match.rate == 1.0
    assert summary.overall("pld").speedup.n == 6
    assert summary.complete is True


def test_forward_calls_count_target_forwards_with_prefill():
    target = tiny_target()
    contenders = [
        contender("greedy", "greedy", target),
        contender("pld", "pld", target, k=4),
        # a self:layers draft shares the target's hook tables; its forwards must not count
        contender("speculative", "speculative", target, draft="self:layers=1", k=3),
    ]
    summary, records = run_compare(tiny_plan(contenders), contenders=contenders)
    for r in records:
        assert len(r.forward_calls) == len(r.prompts)
        if r.method == "greedy":  # the prefill yields token 1, one forward each after it
            assert r.forward_calls == r.new_tokens
        else:  # the prefill is the first step, then one verifying target forward per step
            assert r.forward_calls == r.decoding_steps
    results = summary.results
    for group in ("copy", "chat"):
        assert results["greedy"].categories[group].forward_calls_per_token == 1.0
    assert results["greedy"].overall.forward_calls_per_token == 1.0
    for label in ("pld", "speculative"):
        overall = results[label].overall
        assert overall.forward_calls == overall.steps
        assert overall.forward_calls_per_token == pytest.approx(1 / overall.mat)
        assert overall.forward_calls_per_token < 1.0


@pytest.mark.parametrize("method", ["dllm-confidence", "dllm-freedave"])
def test_forward_count_equals_the_denoisers_own(method):
    from decbench.measure import counting_forwards
    from tests.dllm_fixtures import calls, decode, dllm_runner

    runner = dllm_runner(sharp=4.0)
    with counting_forwards(runner.model) as forwards:
        result = decode(runner, method, [5, 6, 7], n=12)
    assert forwards.calls == calls(result) > 0
    runner.model(input_ids=torch.tensor([[5, 6]]))  # the hook is gone after the block
    assert forwards.calls == calls(result)


def test_table_shows_forwards_per_token(tiny_contenders):
    from rich.console import Console

    from decbench.cli.compare_render import footnote, results_table

    summary, _ = run_compare(tiny_plan(tiny_contenders), contenders=tiny_contenders)
    console = Console(width=80, record=True, color_system=None)
    console.print(results_table(summary))
    console.print(footnote(summary))
    text = console.export_text()
    assert "fwd/tok" in text
    greedy_rows = [line for line in text.splitlines() if " greedy " in f" {line} "]
    assert greedy_rows and all(" 1.00 " in f"{line} " for line in greedy_rows)
    pld = summary.overall("pld").forward_calls_per_token
    assert f"{pld:.2f}" in text


def test_turn_two_follows_the_models_own_answer(tiny_contenders):
    greedy = tiny_contenders[0]
    plan = tiny_plan(tiny_contenders)
    _, records = run_compare(plan, contenders=tiny_contenders)
    chat = next(r for r in records if r.sample_id == "b-1" and r.profile == "greedy")
    expected = encode_turn(
        greedy.session.target, greedy.profile, ["hi there", "and again"], [chat.turns[0]]
    )
    assert chat.prompt_tokens[1] == len(expected)
    assert chat.prompt_tokens[1] > chat.prompt_tokens[0]


def test_encode_turn_builds_the_conversation_for_chat_templates():
    target = tiny_target()
    seen = []

    class ChatTokenizer(ByteTokenizer):
        chat_template = "{{ messages }}"

        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            seen.append(messages)
            return [5] * len(messages)

    target.tokenizer = ChatTokenizer()
    profile = method_profile("greedy", [("generation", "system", "Be brief.")])
    ids = encode_turn(target, profile, ["q1", "q2"], ["a1"])
    assert seen[-1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    assert ids == [5] * 4


def test_interrupted_run_keeps_records_and_resumes(tmp_path, tiny_contenders):
    plan = tiny_plan(tiny_contenders)
    folder = tmp_path / "run"
    store = RunStore.create(folder, plan)

    def stop_after_three(event: Event) -> None:
        if event.kind == "record" and event.done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_compare(plan, store, on_event=stop_after_three, contenders=tiny_contenders)
    kept = read_records(folder / "samples.jsonl")
    assert len(kept) == 3
    partial = json.loads((folder / "summary.json").read_text())
    assert partial["complete"] is False and partial["records"] == 3
    with pytest.raises(ConfigError, match="already holds a compare run; continue it with --resume"):
        RunStore.create(folder, plan)

    # a record cut short by the interruption is dropped and cut from the file
    with (folder / "samples.jsonl").open("a") as f:
        f.write('{"schema": "decbench/sample/v1", "profile": "gre')
    resumed = RunStore.resume(folder)
    assert len(resumed.records) == 3

    ran = []
    for c in tiny_contenders:
        original = c.session.decoder.generate

        def counting(request, original=original, label=c.label):
            ran.append(label)
            return original(request)

        c.session.decoder.generate = counting
    _, records = run_compare(resumed.plan, resumed, contenders=tiny_contenders)
    assert len(records) == 6
    assert len({(r.profile, r.sample_id, r.repeat) for r in records}) == 6
    # left: pld on a-2 (one turn), greedy and pld on b-1 (two turns each), two warm-ups
    assert len(ran) == 1 + 2 + 2 + 2
    on_disk = read_records(folder / "samples.jsonl")
    assert [r.sample_id for r in on_disk] == [r.sample_id for r in records]
    final = json.loads((folder / "summary.json").read_text())
    assert final["complete"] is True and final["records"] == 6
    assert final["results"]["pld"]["overall"]["exact_match"]["rate"] == 1.0


def test_a_damaged_middle_line_is_an_error(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"a": 1}\n{oops\n{"a": 2}\n')
    with pytest.raises(ConfigError, match=r"samples\.jsonl:2: not a valid record"):
        read_records(path)


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"has no run\.json"):
        RunStore.resume(tmp_path)


# -- schema -------------------------------------------------------------------------------------------
SUMMARY_KEYS = {
    "schema",
    "suite",
    "selection",
    "baseline",
    "profiles",
    "repeat",
    "warmup",
    "complete",
    "records",
    "expected_records",
    "environment",
    "results",
    "output_dir",
}
METRIC_KEYS = {
    "runs",
    "tokens",
    "wall_time_s",
    "tokens_per_s",
    "mat",
    "acceptance_rate",
    "steps",
    "drafted",
    "accepted",
    "forward_calls",
    "forward_calls_per_token",
    "peak_memory_mb",
    "peak_memory_delta_mb",
    "speedup",
    "speedup_total",
    "exact_match",
    "quality",
    "constraint",
}
ENVIRONMENT_KEYS = {
    "cpu",
    "threads",
    "device",
    "dtype",
    "torch",
    "transformers",
    "decbench",
    "git_commit",
    "seed",
}


def test_summary_schema(tiny_contenders):
    plan = tiny_plan(tiny_contenders)
    summary, records = run_compare(plan, contenders=tiny_contenders)
    summary = json.loads(json.dumps(summary.to_json()))
    assert set(summary) == SUMMARY_KEYS
    assert summary["schema"] == SCHEMA_COMPARE
    assert set(summary["environment"]) >= ENVIRONMENT_KEYS
    assert set(summary["suite"]) == {
        "name",
        "description",
        "source",
        "categories",
        "count",
        "checksum",
    }
    assert [p["label"] for p in summary["profiles"]] == ["greedy", "pld"]
    for label in ("greedy", "pld"):
        assert set(summary["results"][label]) == {"overall", "categories"}
        assert set(summary["results"][label]["categories"]) == {"copy", "chat"}
        assert set(summary["results"][label]["overall"]) == METRIC_KEYS
    speed = summary["results"]["pld"]["overall"]["speedup"]
    assert set(speed) == {"median", "q1", "q3", "min", "max", "n"}
    # the summary is a pure function of plan and records (so records from several processes merge)
    again = summarize(plan, list(reversed(records)))
    assert again.to_json()["results"] == summary["results"]
    # --baseline can be changed afterwards
    swapped = summarize(plan, records, baseline="pld")
    assert swapped.overall("greedy").speedup is not None


# -- CLI ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["compare", "profile"])
def test_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["decbench", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args,message",
    [
        (["compare"], "compare needs profiles to compare"),
        (["compare", "greedy", "--suite", "sumarization"], "did you mean 'summarization'"),
        (["compare", "greedy", "--suite", "qa", "--category", "math"], "unknown category 'math'"),
        (["compare", "greedy", "-m", "pld", "--baseline", "sample"], "unknown baseline 'sample'"),
        (["compare", "greedy", "--resume", "/nonexistent/run"], "has no run.json"),
    ],
)
def test_compare_bad_input(monkeypatch, capsys, args, message):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, err
    assert message in err
    assert out == ""


def test_plot(tmp_path, tiny_contenders):
    from decbench.compare import plot

    summary, _ = run_compare(tiny_plan(tiny_contenders), contenders=tiny_contenders)
    path = plot.plot_speedups(summary, tmp_path / "speedup.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match=r"use a \.png"):
        plot.plot_speedups(summary, tmp_path / "speedup.bmp")


def test_plot_reports_missing_matplotlib(monkeypatch):
    import builtins

    from decbench.compare import plot

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match=r"pip install 'decbench\[plot\]'"):
        plot._matplotlib()


# -- end to end on the default model -------------------------------------------------------------------
@pytest.mark.model
def test_compare_end_to_end(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "run"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "compare",
        "greedy",
        "pld",
        "-m",
        "hf-greedy",
        "--suite",
        "summarization",
        "--limit",
        "1",
        "-n",
        "16",
        "--json",
        "--output",
        str(folder),
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["schema"] == SCHEMA_COMPARE
    for label in ("pld", "hf-greedy"):
        result = summary["results"][label]["categories"]["summarization"]
        assert result["exact_match"]["rate"] == 1.0
        assert result["speedup"]["median"] > 0
    assert len(read_records(folder / "samples.jsonl")) == 3
    assert json.loads((folder / "summary.json").read_text())["complete"] is True


@pytest.mark.model
def test_spec_bench_file_end_to_end(monkeypatch, capsys, tmp_path):
    questions = tmp_path / "question.jsonl"
    questions.write_text(
        json.dumps(
            {
                "question_id": 7,
                "category": "writing",
                "turns": ["Name a color.", "Name another one."],
            }
        )
        + "\n"
    )
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "compare",
        "-m",
        "greedy",
        "-m",
        "pld",
        "--suite",
        str(questions),
        "-n",
        "8",
        "--show",
        "1",
    )
    assert code == 0, err
    assert "writing" in out and "identical to baseline" in out
    assert "Name another one." in out


def test_resume_refuses_a_different_plan(tmp_path):
    from decbench.compare import check_same_plan

    suite = tiny_suite()
    stored = make_plan([method_profile("greedy"), method_profile("pld")], suite)
    check_same_plan(
        stored, make_plan([method_profile("greedy"), method_profile("pld")], suite), tmp_path
    )
    other = make_plan(
        [method_profile("greedy"), method_profile("pld", [("method", "k", 5)])], suite
    )
    with pytest.raises(ConfigError, match="differ from the stored run"):
        check_same_plan(stored, other, tmp_path)
    fewer = make_plan([method_profile("greedy"), method_profile("pld")], suite.select(limit=1))
    with pytest.raises(ConfigError, match="suite, selection or --repeat differ"):
        check_same_plan(stored, fewer, tmp_path)


# -- the bench plan ---------------------------------------------------------------------------------
def load_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "run.py"
    spec = importlib.util.spec_from_file_location("bench_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path.with_name("plan.toml")


def test_bench_plan_is_valid():
    """Every comparison in bench/plan.toml names real profiles and suites (checked without
    loading a model), so a typo in a newly added method fails here, not after a long run."""
    bench, plan_path = load_bench()
    _, comparisons = bench.read_plan(plan_path)
    names = [c["name"] for c in comparisons]
    assert {"greedy-vs-hf", "input-grounded"} <= set(names)
    for entry in comparisons:
        profiles = [
            bench.build_profile(name, entry, plan_path.parent) for name in entry["profiles"]
        ]
        suite = get_suite(entry.get("suite", "spec-bench-mini")).select(
            entry.get("categories"), entry.get("limit")
        )
        make_plan(profiles, suite, baseline=entry.get("baseline"))
    greedy_vs_hf = comparisons[names.index("greedy-vs-hf")]
    assert (
        greedy_vs_hf["profiles"][0] == "hf-greedy" and greedy_vs_hf["goal"]["profile"] == "greedy"
    )


def test_bench_plan_temperature_reaches_every_profile():
    """A comparison's `temperature` overrides every profile's (seeds-sampling runs at T = 1)."""
    bench, plan_path = load_bench()
    _, comparisons = bench.read_plan(plan_path)
    entry = next(c for c in comparisons if c["name"] == "seeds-sampling")
    for name in entry["profiles"]:
        profile = bench.build_profile(name, entry, plan_path.parent)
        assert profile.sampling.temperature == 1.0


def test_bench_plan_errors_and_goal(tmp_path, tiny_contenders):
    bench, _ = load_bench()
    bad = tmp_path / "plan.toml"
    bad.write_text('[[comparison]]\nname = "x"\nprofiles = ["greedy"]\nsuit = "qa"\n')
    with pytest.raises(ConfigError, match="unknown key 'suit'; did you mean 'suite'"):
        bench.read_plan(bad)
    summary, _ = run_compare(tiny_plan(tiny_contenders), contenders=tiny_contenders)
    entry = {"name": "t", "goal": {"profile": "pld", "speedup": 1000.0, "exact_match": 1.0}}
    row = bench.headline(entry, summary, 1.0, tmp_path)
    assert row["goal"]["met"] is False
    assert row["profiles"]["pld"]["exact_match"] == 1.0
    assert row["profiles"]["greedy"]["speedup_median"] is None

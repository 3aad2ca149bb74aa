"""Compare's records as dataclasses (decbench/jsonrecord.py): each type goes to JSON and back
unchanged, files written by the dict-based code before them (tests/data/records, from a tiny
run) load and are written back byte for byte, and a damaged file gets an error naming the key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from decbench.compare.batching import BatchSummary
from decbench.compare.summary import SCHEMA_COMPARE, CompareSummary
from decbench.errors import ConfigError
from decbench.jsonrecord import ABSENT, EMPTY_IS_NONE, OMIT_NONE, Absent, JsonRecord

DATA = Path(__file__).parent / "data" / "records"


def stored(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def same_text(data: dict, again: dict) -> bool:
    """Equal as written: the same keys in the same order, the same values."""
    return json.dumps(data, indent=2) == json.dumps(again, indent=2)


# -- the helper ----------------------------------------------------------------------------------
@dataclass
class Inner(JsonRecord):
    n: int
    x: float | None = None


@dataclass(kw_only=True)
class Outer(JsonRecord):
    schema: str = "decbench/test/v1"
    by_size: dict[int, Inner]
    items: list[Inner]
    late: int | None = field(default=None, metadata=OMIT_NONE)
    table: Inner | None = field(default=None, metadata=EMPTY_IS_NONE)
    maybe: Inner | Absent | None = ABSENT


def test_fields_go_to_json_and_back():
    outer = Outer(by_size={2: Inner(1, 0.5)}, items=[Inner(3)])
    data = outer.to_json()
    assert data == {
        "schema": "decbench/test/v1",
        "by_size": {"2": {"n": 1, "x": 0.5}},  # int keys are JSON strings
        "items": [{"n": 3, "x": None}],
        "table": {},  # None written as an empty table; `late` and `maybe` left out
    }
    assert Outer.from_json(data) == outer
    full = Outer(by_size={}, items=[], late=4, table=Inner(1), maybe=None)
    assert full.to_json()["late"] == 4 and full.to_json()["maybe"] is None
    assert Outer.from_json(full.to_json()) == full


@pytest.mark.parametrize(
    "change,message",
    [
        ({"schema": "decbench/test/v2"}, "f.json: expected schema decbench/test/v1, got"),
        ({"extra": 1}, r"f.json: unknown key 'extra' \(expected: schema, by_size, items"),
        ({"items": [{"n": "3"}]}, r"f.json: items\[0\].n: expected an integer, got a string"),
        ({"items": [{"n": 1, "x": None, "y": 2}]}, r"items\[0\]: unknown key 'y'"),
        ({"by_size": {"two": {"n": 1}}}, "by_size: expected integer keys, got 'two'"),
        ({"by_size": []}, "by_size: expected an object, got a list"),
    ],
)
def test_bad_documents_name_the_key(change, message):
    data = {**Outer(by_size={}, items=[]).to_json(), **change}
    with pytest.raises(ConfigError, match=message):
        Outer.from_json(data, "f.json")
    with pytest.raises(ConfigError, match="missing key 'items'"):
        Outer.from_json({"by_size": {}}, "f.json")


# -- compare summaries ---------------------------------------------------------------------------
def test_a_stored_compare_summary_loads_and_is_written_back_unchanged():
    data = stored("summary.json")
    summary = CompareSummary.from_json(data, "summary.json")
    assert summary.schema == SCHEMA_COMPARE and summary.labels == [
        "greedy",
        "pld",
        "momentum",
        "greedy-2",
    ]
    diverged = summary.overall("greedy-2").exact_match.first_divergence.diverged
    assert diverged[0].diagnosis is not None and diverged[0].diagnosis.near_tie is False
    assert summary.overall("greedy").quality.agreement_with_greedy is None
    assert summary.overall("momentum").quality.agreement_with_greedy.pairs == 2
    assert summary.overall("pld").constraint is None  # {} in the file
    assert same_text(summary.to_json(), data)
    again = CompareSummary.from_json(summary.to_json())
    assert again == summary


def test_a_sharded_summary_keeps_its_ranks():
    from decbench.compare.shard import ranks_summary

    summary = CompareSummary.from_json(stored("summary.json"))
    summary.ranks = ranks_summary([{"rank": 0, "host": "a"}, {"rank": 1, "host": "b"}])
    data = summary.to_json()
    assert list(data)[-1] == "ranks" and data["ranks"]["hosts"] == ["a", "b"]
    assert CompareSummary.from_json(data) == summary


def test_a_stored_batch_summary_loads_and_is_written_back_unchanged():
    data = stored("batch-compare.json")
    summary = BatchSummary.from_json(data, "batch-compare.json")
    assert summary.batch_sizes == [1, 2] and set(summary.results["pld"]) == {1, 2}
    assert set(summary.crossover) == {"pld"} and summary.runs[0].label == "greedy"
    assert same_text(summary.to_json(), data)
    assert BatchSummary.from_json(summary.to_json()) == summary


def test_the_stored_summary_is_recomputed_from_the_stored_plan_and_records(tmp_path):
    """summarize is a pure function of run.json and samples.jsonl: the same numbers, keys and
    order as the summary the dict-based code wrote (its environment is this machine's)."""
    from decbench.compare import summarize
    from decbench.compare.store import read_plan, read_records

    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("run.json", "samples.jsonl"):
        (folder / name).write_bytes((DATA / name).read_bytes())
    summary = summarize(
        read_plan(folder), read_records(folder / "samples.jsonl"), Path("runs/tiny")
    )
    data, again = stored("summary.json"), summary.to_json()
    data.pop("environment"), again.pop("environment")
    assert same_text(again, data)


# -- profile reports -----------------------------------------------------------------------------
def test_a_stored_profile_report_loads_and_is_written_back_unchanged():
    from rich.console import Console

    from decbench.cli.profile_render import prediction_view, verify_chart
    from decbench.compare.profiling import SCHEMA_PROFILE, Prediction, ProfileReport

    data = stored("profile.json")
    report = ProfileReport.from_json(data, "profile.json")
    assert report.schema == SCHEMA_PROFILE and report.prediction.drafts is True
    assert [p.tokens for p in report.verify_cost] == [1, 2, 3]
    assert same_text(report.to_json(), data)
    assert ProfileReport.from_json(report.to_json()) == report
    console = Console(width=80, record=True, color_system=None)
    console.print(verify_chart(report), prediction_view(report))
    assert "Leviathan" in console.export_text()
    # a method that drafts nothing has none of the draft-only numbers, in the file either
    plain = Prediction(drafts=False, expected_tokens_per_step=1.0, leviathan_speedup=1.0)
    assert "alpha" not in plain.to_json() and Prediction.from_json(plain.to_json()) == plain


# -- plans -----------------------------------------------------------------------------------------
def test_a_stored_plan_loads_and_is_written_back_unchanged(tmp_path):
    from decbench.compare import Plan, make_plan
    from decbench.compare.store import read_plan
    from decbench.profiles import method_profile
    from tests.tiny_sessions import tiny_suite

    data = stored("run.json")
    plan = Plan.from_json(data, "run.json")
    assert plan.labels == ["greedy", "pld", "momentum", "greedy-2"]
    assert plan.profiles[1].profile.options.k == 4 and [s.id for s in plan.samples] == [
        "a-1",
        "b-1",
    ]
    assert same_text(plan.to_json(), data)
    made = make_plan([method_profile("greedy"), method_profile("pld")], tiny_suite(), repeat=2)
    assert Plan.from_json(made.to_json()).to_json() == made.to_json()
    (tmp_path / "run.json").write_text(json.dumps({**data, "schema": "decbench/compare/v1"}))
    with pytest.raises(ConfigError, match="expected schema decbench/compare-run/v1"):
        read_plan(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({**data, "repeat": "2"}))
    with pytest.raises(ConfigError, match=r"run.json: repeat: expected an integer, got a string"):
        read_plan(tmp_path)


# -- sample records --------------------------------------------------------------------------------
def test_stored_records_load_and_are_written_back_unchanged(tmp_path):
    from decbench.compare.harness import SampleRecord
    from decbench.compare.store import read_records

    lines = (DATA / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    records = read_records(DATA / "samples.jsonl")
    assert [json.dumps(r.to_json()) for r in records] == lines
    assert all(SampleRecord.from_json(r.to_json()) == r for r in records)
    by_label = {r.profile: r for r in records if r.sample_id == "a-1"}
    # the baseline's records are not compared (no key); a compared one has a diagnosis or null
    assert by_label["greedy"].divergence is ABSENT
    assert by_label["greedy-2"].divergence.against == "greedy"
    assert by_label["pld"].divergence is None and "divergence" in by_label["pld"].to_json()
    assert by_label["pld"].stats.steps == sum(by_label["pld"].decoding_steps)


def test_a_record_written_before_later_keys_loads_without_them(tmp_path):
    """Records from before forward_calls, proposer, constraint and quality were recorded."""
    from decbench.compare import summarize
    from decbench.compare.store import read_plan, read_records

    old = [json.loads(line) for line in (DATA / "samples.jsonl").read_text().splitlines()]
    for data in old:
        for key in ("forward_calls", "proposer", "constraint", "quality", "divergence"):
            data.pop(key, None)
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in old))
    (tmp_path / "run.json").write_bytes((DATA / "run.json").read_bytes())
    records = read_records(tmp_path / "samples.jsonl")
    assert [r.to_json() for r in records] == old  # written back without the keys
    summary = summarize(read_plan(tmp_path), records)
    assert summary.overall("pld").forward_calls_per_token is None
    assert summary.overall("pld").quality is None and summary.overall("pld").constraint is None


def test_a_damaged_record_names_its_line_and_key(tmp_path):
    from decbench.compare.store import read_records

    lines = (DATA / "samples.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["wall_time"] = ["fast"]
    (tmp_path / "samples.jsonl").write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ConfigError, match=r"samples\.jsonl:2: wall_time\[0\]: expected a number"):
        read_records(tmp_path / "samples.jsonl")


# -- Spec-Bench speed reports ------------------------------------------------------------------------
def test_a_stored_speed_report_loads_and_is_written_back_unchanged():
    from decbench.cli.speed_report import report_table
    from decbench.compare.speed_report import SCHEMA_SPEED, SpeedReport

    data = stored("spec-bench-speed.json")
    report = SpeedReport.from_json(data, "spec-bench-speed.json")
    assert report.schema == SCHEMA_SPEED and report.baseline == "greedy"
    assert report.methods["pld"]["overall"].speedup.std is None  # one run
    assert same_text(report.to_json(), data)
    assert SpeedReport.from_json(report.to_json()) == report
    assert report_table(report).row_count == sum(len(t) for t in report.methods.values())


# -- the command, end to end on tiny models ----------------------------------------------------------
def test_compare_command_reads_its_records_and_summary_as_objects(monkeypatch, capsys, tmp_path):
    """compare on the tiny model (no model files): the progress lines, the tables and the side by
    side view read the records and the summary; the files and --json are the documents."""
    import decbench.compare as compare_mod
    from decbench.compare.summary import read_summary
    from tests.test_batch_compare import fake_open
    from tests.test_compare import run_cli

    monkeypatch.setattr(compare_mod, "open_contenders", fake_open)
    folder = tmp_path / "run"
    args = ["compare", "greedy", "pld", "--suite", "multi-turn", "--limit", "1", "-n", "6"]
    code, out, err = run_cli(
        monkeypatch, capsys, *args, "--warmup", "0", "--show", "1", "-o", str(folder)
    )
    assert code == 0, err
    assert "ran pld on" in err and "tok/s" in err  # one progress line per record
    assert "speedup" in out and "user:" in out  # the table and the side-by-side view
    summary = read_summary(folder)
    assert summary.complete and summary.output_dir == str(folder)
    code, out, err = run_cli(monkeypatch, capsys, "compare", "--resume", str(folder), "--json")
    assert code == 0, err
    assert CompareSummary.from_json(json.loads(out)).records == summary.records

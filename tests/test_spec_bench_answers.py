"""Spec-Bench answer files out of `compare --output` and speed.py's report read back from them:
the exact line shape Spec-Bench's evaluation/speed.py and equal.py read, one line per record even
across an interruption and --resume, speed.py's arithmetic on a hand-computed example, and the
CLI end to end (tiny models, then one short run of the default model)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from decbench.cli.app import main
from decbench.compare import Event, RunStore, make_plan, run_compare
from decbench.compare.answers import answer_id, answer_row, question_id
from decbench.compare.speed_report import speed_report
from decbench.compare.store import read_records
from decbench.errors import ConfigError
from decbench.suites import get_suite
from tests.records import sample_record
from tests.tiny_sessions import contender, tiny_target

FIXTURE = Path(__file__).parent / "data" / "spec_bench_question.jsonl"
CHOICE_KEYS = ["index", "turns", "decoding_steps", "new_tokens", "wall_time", "accept_lengths"]
ROW_KEYS = ["question_id", "category", "answer_id", "model_id", "choices", "tstamp"]


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["decbench", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- speed.py's arithmetic, by hand ----------------------------------------------------------------
def answer(qid, category, new_tokens, wall_time, accept_lengths):
    choice = {
        "index": 0,
        "turns": ["x"] * len(new_tokens),
        "decoding_steps": [1] * len(new_tokens),
        "new_tokens": new_tokens,
        "wall_time": wall_time,
        "accept_lengths": accept_lengths,
    }
    return {"question_id": qid, "category": category, "choices": [choice]}


def write_answers(path: Path, *rows: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def hand_answers(tmp_path):
    """Two runs of a baseline and a method on one RAG and one two-turn writing question.

    run 1: base q1 10 tok / 2 s = 5, q2 (6+4) / (1+1) = 5  -> 5.0 tok/s
           spec q1 10 / 1 = 10,      q2 (6+4) / (0.5+1.5) = 5 -> 7.5 tok/s (mean of speeds;
           total tokens / total time would be 20 / 3 = 6.67), speedup 1.5
    run 2: base q1 10 / 2.5 = 4, q2 5 -> 4.5;  spec q1 10 / 1.25 = 8, q2 5 -> 6.5;
           speedup 6.5 / 4.5 = 1.4444
    accept lengths: run 1 q1 [2,3,5] q2 [1,1,2,2,4]; run 2 q1 [2,3,5] q2 [2,2,2,4]
    """
    folder = tmp_path / "answers"
    write_answers(
        folder / "run_1" / "base.jsonl",
        answer(1, "rag", [10], [2.0], [1] * 10),
        answer(2, "writing", [6, 4], [1.0, 1.0], [1] * 10),
    )
    write_answers(
        folder / "run_1" / "spec.jsonl",
        answer(1, "rag", [10], [1.0], [2, 3, 5]),
        answer(2, "writing", [6, 4], [0.5, 1.5], [1, 1, 2, 2, 4]),
    )
    write_answers(
        folder / "run_2" / "base.jsonl",
        answer(1, "rag", [10], [2.5], [1] * 10),
        answer(2, "writing", [6, 4], [1.0, 1.0], [1] * 10),
    )
    write_answers(
        folder / "run_2" / "spec.jsonl",
        answer(1, "rag", [10], [1.25], [2, 3, 5]),
        answer(2, "writing", [6, 4], [1.0, 1.0], [2, 2, 2, 4]),
    )
    return folder


def test_speed_report_reproduces_speed_py_arithmetic(hand_answers):
    report = speed_report(hand_answers, baseline="base")
    assert report.runs == ["run_1", "run_2"] and report.baseline == "base"
    tasks = report.methods["spec"]
    assert list(tasks) == ["mt_bench", "rag", "overall"]  # speed.py's order; writing is MT-bench
    overall = tasks["overall"]
    assert overall.runs == 2 and overall.questions == [2, 2]
    assert overall.tokens_per_s.mean == pytest.approx(7.0)
    assert overall.tokens_per_s.std == pytest.approx(0.5**0.5)  # ddof = 1
    assert overall.baseline_tokens_per_s.mean == pytest.approx(4.75)
    assert overall.baseline_tokens_per_s.std == pytest.approx(0.5 / 2**0.5)
    assert overall.speedup.mean == pytest.approx((1.5 + 6.5 / 4.5) / 2)
    assert overall.speedup.std == pytest.approx((1.5 - 6.5 / 4.5) / 2**0.5)
    assert overall.mat == pytest.approx(40 / 15)  # pooled over every step of both runs
    rag = tasks["rag"]
    assert rag.tokens_per_s.mean == pytest.approx(9.0)
    assert rag.speedup.mean == pytest.approx(2.0) and rag.speedup.std == 0.0
    assert rag.mat == pytest.approx(20 / 6)
    assert tasks["mt_bench"].speedup.mean == pytest.approx(1.0)
    assert tasks["mt_bench"].mat == pytest.approx(20 / 9)
    # one run: speed.py's single report, no std
    single = speed_report(hand_answers / "run_1", baseline="base").methods["spec"]["overall"]
    assert single.runs == 1 and single.speedup.to_json() == {"mean": 1.5, "std": None}
    assert single.mat == pytest.approx(20 / 8)


def test_baseline_tokens_can_be_counted_as_speed_py_does(hand_answers):
    """speed.py re-tokenizes the baseline's text and subtracts one per turn; a counter standing
    in for that (one less than new_tokens per turn) lowers only the baseline's speeds."""

    def minus_one_per_turn(row):
        return sum(n - 1 for n in row["choices"][0]["new_tokens"])

    report = speed_report(hand_answers / "run_1", "base", (minus_one_per_turn, "test count"))
    overall = report.methods["spec"]["overall"]
    assert report.baseline_tokens == "test count"
    # base q1 9 / 2 = 4.5, q2 (5 + 3) / 2 = 4 -> 4.25; the method keeps its new_tokens: 7.5
    assert overall.baseline_tokens_per_s.mean == pytest.approx(4.25)
    assert overall.tokens_per_s.mean == pytest.approx(7.5)
    assert overall.speedup.mean == pytest.approx(7.5 / 4.25)
    assert speed_report(hand_answers, "base").baseline_tokens == "new_tokens (generated ids)"


def test_speed_report_errors_name_the_file(hand_answers, tmp_path):
    with pytest.raises(ConfigError, match=r"give --baseline \(one of: base, spec\)"):
        speed_report(hand_answers)
    with pytest.raises(ConfigError, match="unknown baseline 'bsae'; did you mean 'base'"):
        speed_report(hand_answers, baseline="bsae")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no Spec-Bench answer files"):
        speed_report(tmp_path / "empty", baseline="x")
    bad = hand_answers / "run_2" / "spec.jsonl"
    bad.write_text(bad.read_text() + '{"question_id": 3, "category": "qa", "choices": []}\n')
    with pytest.raises(ConfigError, match=r"run_2/spec\.jsonl:3: not a Spec-Bench answer line"):
        speed_report(hand_answers, baseline="base")
    bad.write_text(json.dumps(answer(3, "qa", [1], [0.0], [1])) + "\n")
    with pytest.raises(ConfigError, match=r"spec\.jsonl:1: wall_time sums to 0.0"):
        speed_report(hand_answers, baseline="base")


# -- answer lines from records ---------------------------------------------------------------------
def test_answer_row_has_spec_bench_shape():
    record = sample_record(
        "pld",
        "481",
        category="rag",
        model="smollm2-135m",
        environment={"dtype": "float32"},
        finished_at="2026-12-04T18:00:00+00:00",
        turns=["an answer"],
        decoding_steps=[2],
        new_tokens=[5],
        wall_time=[0.25],
        accept_lengths=[3, 2],
    )
    row = answer_row(record)
    assert list(row) == ROW_KEYS
    assert row["question_id"] == 481 and row["model_id"] == "smollm2-135m-pld-float32"
    assert row["choices"] == [
        {
            "index": 0,
            "turns": ["an answer"],
            "decoding_steps": [2],
            "new_tokens": [5],
            "wall_time": [0.25],
            "accept_lengths": [3, 2],
        }
    ]
    assert row["tstamp"] == 1796407200.0
    assert len(row["answer_id"]) == 22 and answer_row(record)["answer_id"] == row["answer_id"]
    assert answer_id(dataclasses.replace(record, repeat=1)) != row["answer_id"]
    assert [question_id(s) for s in ("7", "007", "t-1", "-3")] == [7, "007", "t-1", "-3"]


@pytest.fixture
def tiny_spec_bench_run():
    target = tiny_target()
    contenders = [contender("greedy", "greedy", target), contender("pld", "pld", target, k=4)]
    suite = get_suite(str(FIXTURE)).select(["roleplay", "rag"], limit=2)
    plan = make_plan([c.profile for c in contenders], suite, repeat=2, warmup=0)
    return contenders, plan


def check_answer_files(folder: Path, records: list, labels=("greedy", "pld")) -> None:
    """One line per record, in the plan's order, with the record's own measurements."""
    for repeat in (0, 1):
        orders = []
        for label in labels:
            rows = lines(folder / "spec-bench" / f"run_{repeat + 1}" / f"{label}.jsonl")
            own = [r for r in records if r.profile == label and r.repeat == repeat]
            assert len(rows) == len(own)
            for row, record in zip(rows, own, strict=True):
                assert list(row) == ROW_KEYS and list(row["choices"][0]) == CHOICE_KEYS
                assert row["question_id"] == int(record.sample_id)
                assert row["category"] == record.category
                choice = row["choices"][0]
                for key in CHOICE_KEYS[1:]:
                    assert choice[key] == getattr(record, key), key
                assert len(choice["turns"]) == len(record.prompts)
                assert sum(choice["accept_lengths"]) == sum(choice["new_tokens"])
            orders.append([r["question_id"] for r in rows])
        assert orders[0] == orders[1]  # equal.py compares the files line by line


def test_compare_output_writes_answer_files(tmp_path, tiny_spec_bench_run):
    contenders, plan = tiny_spec_bench_run
    store = RunStore.create(tmp_path / "run", plan)
    _, records = run_compare(plan, store, contenders=contenders)
    assert len(records) == 2 * 4 * 2
    check_answer_files(tmp_path / "run", records)
    assert [r["question_id"] for r in lines(tmp_path / "run/spec-bench/run_1/pld.jsonl")] == [
        91,
        93,
        481,
        482,
    ]
    report = speed_report(tmp_path / "run")  # the baseline comes from run.json
    assert report.baseline == "greedy" and report.runs == ["run_1", "run_2"]
    assert list(report.methods["pld"]) == ["mt_bench", "rag", "overall"]
    # the report's figures from the records: mean over runs of the mean per-question speed
    overall = report.methods["pld"]["overall"]
    assert overall.questions == [4, 4]
    per_run = []
    for repeat in (0, 1):
        pld = [r for r in records if r.profile == "pld" and r.repeat == repeat]
        per_run.append(sum(sum(r.new_tokens) / sum(r.wall_time) for r in pld) / len(pld))
    assert overall.tokens_per_s.mean == pytest.approx(sum(per_run) / 2)
    pld = [r for r in records if r.profile == "pld"]
    steps = [a for r in pld for a in r.accept_lengths]
    assert report.methods["pld"]["overall"].mat == pytest.approx(sum(steps) / len(steps))
    assert report.methods["pld"]["overall"].mat > 1  # the fixture's prompts repeat text


def test_resume_keeps_one_answer_line_per_record(tmp_path, tiny_spec_bench_run):
    contenders, plan = tiny_spec_bench_run
    folder = tmp_path / "run"
    store = RunStore.create(folder, plan)

    def stop_after_five(event: Event) -> None:
        if event.kind == "record" and event.done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_compare(plan, store, on_event=stop_after_five, contenders=contenders)
    answers = folder / "spec-bench" / "run_1"
    assert len(lines(answers / "greedy.jsonl")) == 3 and len(lines(answers / "pld.jsonl")) == 2
    # an interruption between the record and its answer line, and one cut mid-line
    pld = answers / "pld.jsonl"
    first_line = pld.read_text().splitlines()[0]
    pld.write_text(first_line + "\n" + first_line[:40])
    resumed = RunStore.resume(folder)
    assert len(lines(pld)) == 2  # rewritten from the two kept pld records
    _, records = run_compare(resumed.plan, resumed, contenders=contenders)
    assert len(records) == 16
    assert read_records(folder / "samples.jsonl") == records
    check_answer_files(folder, records)


def test_speed_report_cli(monkeypatch, capsys, tmp_path, hand_answers):
    code, out, err = run_cli(monkeypatch, capsys, "speed-report", str(hand_answers), "-h")
    assert code == 0 and "Examples" in out
    code, out, err = run_cli(
        monkeypatch, capsys, "speed-report", str(hand_answers), "--baseline", "base", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["methods"]["spec"]["overall"]["mat"] == pytest.approx(40 / 15)
    code, out, err = run_cli(
        monkeypatch, capsys, "speed-report", str(hand_answers), "--baseline", "base"
    )
    assert code == 0, err
    assert "rag" in out and "2.000×" in out and "1.472×" in out and "± 0.039" in out
    code, out, err = run_cli(monkeypatch, capsys, "speed-report", str(hand_answers))
    assert code == 2 and "give --baseline (one of: base, spec)" in err
    code, out, err = run_cli(monkeypatch, capsys, "speed-report", str(tmp_path / "nope"))
    assert code == 2 and "no such folder" in err


# -- the done-when run on the default model -----------------------------------------------------------
@pytest.mark.model
def test_spec_bench_question_file_to_speed_report(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "sb"
    args = ["compare", "greedy", "pld", "--suite", str(FIXTURE), "--category", "rag"]
    code, out, err = run_cli(
        monkeypatch, capsys, *args, "--limit", "2", "-n", "24", "-o", str(folder)
    )
    assert code == 0, err
    assert f"decbench speed-report {folder}" in err
    records = read_records(folder / "samples.jsonl")
    assert len(records) == 4
    check_answer_files_single(folder, records)
    code, out, err = run_cli(monkeypatch, capsys, "speed-report", str(folder), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["methods"]["pld"]) == ["rag", "overall"]
    assert report["methods"]["pld"]["rag"]["questions"] == [2]
    assert report["methods"]["pld"]["rag"]["mat"] >= 1
    code, out, err = run_cli(
        monkeypatch, capsys, "speed-report", str(folder), "--tokenizer", "smollm2-135m", "--json"
    )
    assert code == 0, err
    assert "re-tokenized by smollm2-135m" in json.loads(out)["baseline_tokens"]


def check_answer_files_single(folder: Path, records: list) -> None:
    for label in ("greedy", "pld"):
        rows = lines(folder / "spec-bench" / "run_1" / f"{label}.jsonl")
        assert [r["question_id"] for r in rows] == [481, 482]
        own = [r for r in records if r.profile == label]
        assert [r["choices"][0]["new_tokens"] for r in rows] == [r.new_tokens for r in own]
    greedy = lines(folder / "spec-bench" / "run_1" / "greedy.jsonl")
    pld = lines(folder / "spec-bench" / "run_1" / "pld.jsonl")
    # PLD is lossless under greedy: equal.py would say "Result totally Equal!"
    assert [r["choices"][0]["turns"] for r in greedy] == [r["choices"][0]["turns"] for r in pld]

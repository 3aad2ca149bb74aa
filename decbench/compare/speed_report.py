"""Spec-Bench's speed report (its evaluation/speed.py) from Spec-Bench answer files: decbench's
own (decbench/compare/answers.py) or anyone's, such as published Spec-Bench runs.

speed.py's arithmetic, per task and per run (one answer file per method and run):

- a question's speed is the sum of its turns' `new_tokens` over the sum of their `wall_time`;
- a method's tokens/s is the *mean of its questions' speeds* (not total tokens over total time);
- the speedup is the method's tokens/s over the baseline's, both such means;
- MAT ("#Mean accepted tokens") is the mean of `accept_lengths`, pooled over every step of every
  question (so long answers weigh more).

Over several runs (speed.py's `get_mean_speedup`), tokens/s, baseline tokens/s and speedup are the
mean of the per-run figures with their sample standard deviation (ddof = 1), and MAT is pooled
over the runs' steps. Tasks are speed.py's: `mt_bench` (its eight MT-bench categories), then
`translation`, `summarization`, `qa`, `math_reasoning`, `rag`, and `overall` (every question);
any other category present (decbench's built-in suites) gets a row of its own, before `overall`.

One difference by default: speed.py counts the *baseline's* tokens by re-tokenizing its answer
text, minus one per turn for the BOS that Vicuna's tokenizer adds, while the method's come from
`new_tokens`; here both come from `new_tokens`, the generated ids, as everywhere in decbench.
`tokenizer_counter(model)` counts speed.py's way, for figures identical to its own (with a
tokenizer that adds no BOS, such as SmolLM2's, that undercounts every baseline turn by one).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decbench.compare.answers import ANSWERS_DIR
from decbench.errors import ConfigError, unknown
from decbench.jsonrecord import JsonRecord

TokenCounter = Callable[[dict[str, Any]], int]  # tokens of one answer line, over its turns

SCHEMA_SPEED = "decbench/spec-bench-speed/v1"
MT_BENCH_CATEGORIES = (
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
)
TASKS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
OVERALL = "overall"
RUN_FILE = "run.json"  # a compare --output folder (decbench/compare/store.py)


# -- the report (decbench/spec-bench-speed/v1) ----------------------------------------------------
@dataclass
class MeanStd(JsonRecord):
    mean: float
    std: float | None  # sample standard deviation over runs (ddof = 1); None for one run


@dataclass
class TaskFigures(JsonRecord):
    """speed.py's figures for one method on one task, over the runs."""

    runs: int
    questions: list[int]  # [runs]
    mat: float | None  # pooled over every step of every run
    tokens_per_s: MeanStd
    baseline_tokens_per_s: MeanStd
    speedup: MeanStd


@dataclass(kw_only=True)
class SpeedReport(JsonRecord):
    schema: str = SCHEMA_SPEED
    answers: str  # the folder of answer files
    runs: list[str]  # run folder names
    baseline: str
    baseline_tokens: str  # how the baseline's tokens were counted
    methods: dict[str, dict[str, TaskFigures]]  # label -> task -> figures, in speed.py's order


@dataclass
class RunFigures:
    """speed.py's `speed()` for one task of one run."""

    questions: int
    tokens_per_s: float  # mean of the questions' speeds
    baseline_tokens_per_s: float
    speedup: float
    accept_lengths: list[int]  # [steps] every step of every question


# -- reading ------------------------------------------------------------------------------------
def read_answers(path: Path) -> list[dict[str, Any]]:
    """The answer lines of one file; a line without what speed.py reads is an error naming it."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
            wall = _check_answer(row)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ConfigError(
                f"{where}: not a Spec-Bench answer line (needs category and choices[0] with "
                f"new_tokens, wall_time, accept_lengths): {e!r}"
            ) from e
        if wall <= 0:
            raise ConfigError(f"{where}: wall_time sums to {wall}; a speed needs a positive time")
        rows.append(row)
    return rows


def _check_answer(row: dict[str, Any]) -> float:
    """Raises on a missing or mistyped field that speed.py reads; returns the summed wall time."""
    choice = row["choices"][0]
    if not isinstance(row["category"], str):
        raise TypeError("category is not a string")
    sum(int(n) for n in choice["new_tokens"])
    sum(float(a) for a in choice["accept_lengths"])
    return float(sum(choice["wall_time"]))


def locate(folder: Path, baseline: str | None) -> tuple[Path, str | None]:
    """The answers folder and default baseline for DIR: a compare --output folder (its
    spec-bench/ folder, its plan's baseline), a folder holding spec-bench/, or the answers
    folder itself (run_1/, run_2/ ... or the .jsonl files directly)."""
    folder = folder.expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (give a compare --output folder)")
    if (folder / RUN_FILE).is_file() and baseline is None:
        try:
            baseline = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))["baseline"]
        except (ValueError, KeyError) as e:
            raise ConfigError(f"{folder / RUN_FILE}: no baseline in the stored plan") from e
    if (folder / ANSWERS_DIR).is_dir():
        folder = folder / ANSWERS_DIR
    return folder, baseline


def answer_runs(answers_dir: Path) -> dict[str, dict[str, Path]]:
    """{run name: {method label: answer file}}: run_1/, run_2/ ... in numeric order, or the
    folder itself as one run."""
    folders = [p for p in answers_dir.glob("run_*") if p.is_dir()]
    folders.sort(key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else 10**9)
    runs = {p.name: {f.stem: f for f in sorted(p.glob("*.jsonl"))} for p in folders}
    if not runs:
        runs = {answers_dir.name: {f.stem: f for f in sorted(answers_dir.glob("*.jsonl"))}}
    runs = {name: files for name, files in runs.items() if files}
    if not runs:
        raise ConfigError(f"{answers_dir}: no Spec-Bench answer files (*.jsonl) found")
    return runs


# -- speed.py's arithmetic ----------------------------------------------------------------------
def task_of(category: str) -> str:
    if category in MT_BENCH_CATEGORIES:
        return "mt_bench"
    return category


def generated_tokens(row: dict[str, Any]) -> int:
    return sum(row["choices"][0]["new_tokens"])


def tokenizer_counter(model: str) -> tuple[TokenCounter, str]:
    """speed.py's baseline count: len(tokenizer(turn).input_ids) - 1, summed over turns, with
    the tokenizer of `model` (a decbench model name or folder); also returns a description."""
    from transformers import AutoTokenizer

    from decbench.models import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(model), local_files_only=True)

    def count(row: dict[str, Any]) -> int:
        return sum(len(tokenizer(turn).input_ids) - 1 for turn in row["choices"][0]["turns"])

    return count, f"re-tokenized by {model}'s tokenizer, minus one per turn (speed.py)"


def question_speed(row: dict[str, Any], count: TokenCounter = generated_tokens) -> float:
    return count(row) / sum(row["choices"][0]["wall_time"])


def run_figures(
    method_rows: list[dict[str, Any]],
    baseline_rows: list[dict[str, Any]],
    baseline_tokens: TokenCounter = generated_tokens,
) -> RunFigures | None:
    """speed.py's `speed()` for one task of one run; None when either side has no question."""
    if not method_rows or not baseline_rows:
        return None
    speeds = [question_speed(r) for r in method_rows]
    baseline_speeds = [question_speed(r, baseline_tokens) for r in baseline_rows]
    tokens_per_s = statistics.fmean(speeds)
    baseline_tokens_per_s = statistics.fmean(baseline_speeds)
    return RunFigures(
        questions=len(method_rows),
        tokens_per_s=tokens_per_s,
        baseline_tokens_per_s=baseline_tokens_per_s,
        speedup=tokens_per_s / baseline_tokens_per_s,
        accept_lengths=[a for r in method_rows for a in r["choices"][0]["accept_lengths"]],
    )


def mean_std(values: list[float]) -> MeanStd:
    """Mean and sample standard deviation (ddof = 1; None for a single run)."""
    return MeanStd(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)


def combine(per_run: list[RunFigures]) -> TaskFigures:
    """speed.py's `get_mean_speedup` over runs: means and stds per run, MAT pooled."""
    accept = [a for figures in per_run for a in figures.accept_lengths]
    return TaskFigures(
        runs=len(per_run),
        questions=[f.questions for f in per_run],
        mat=statistics.fmean(accept) if accept else None,
        tokens_per_s=mean_std([f.tokens_per_s for f in per_run]),
        baseline_tokens_per_s=mean_std([f.baseline_tokens_per_s for f in per_run]),
        speedup=mean_std([f.speedup for f in per_run]),
    )


def task_names(rows: list[dict[str, Any]]) -> list[str]:
    """speed.py's tasks present, then other categories by first appearance, then overall."""
    present = list(dict.fromkeys(task_of(r["category"]) for r in rows))
    return [t for t in TASKS if t in present] + [t for t in present if t not in TASKS] + [OVERALL]


def in_task(row: dict[str, Any], task: str) -> bool:
    return task == OVERALL or task_of(row["category"]) == task


def speed_report(
    folder: Path,
    baseline: str | None = None,
    baseline_tokens: tuple[TokenCounter, str] | None = None,
) -> SpeedReport:
    """The decbench/spec-bench-speed/v1 report of every method against the baseline; the
    baseline's tokens come from `new_tokens` unless a (counter, description) is given."""
    count, counted = baseline_tokens or (generated_tokens, "new_tokens (generated ids)")
    answers_dir, baseline = locate(folder, baseline)
    runs = answer_runs(answers_dir)
    labels = list(dict.fromkeys(label for files in runs.values() for label in files))
    if baseline is None:
        raise ConfigError(
            f"{answers_dir}: which answer file is the baseline? give --baseline "
            f"(one of: {', '.join(labels)})"
        )
    if baseline not in labels:
        raise unknown("baseline", baseline, labels, where=str(answers_dir))
    data = {
        run: {label: read_answers(path) for label, path in files.items()}
        for run, files in runs.items()
    }
    methods: dict[str, dict[str, TaskFigures]] = {}
    for label in labels:
        if label == baseline:
            continue
        paired = [d for d in data.values() if label in d and baseline in d]
        rows = [r for d in paired for r in d[label]]
        tasks: dict[str, TaskFigures] = {}
        for task in task_names(rows):
            per_run = [
                run_figures(
                    [r for r in d[label] if in_task(r, task)],
                    [r for r in d[baseline] if in_task(r, task)],
                    count,
                )
                for d in paired
            ]
            per_run = [f for f in per_run if f is not None]
            if per_run:
                tasks[task] = combine(per_run)
        methods[label] = tasks
    return SpeedReport(
        answers=str(answers_dir),
        runs=list(runs),
        baseline=baseline,
        baseline_tokens=counted,
        methods=methods,
    )

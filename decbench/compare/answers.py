"""Spec-Bench answer files from compare records, so that decbench runs sit next to published
Spec-Bench runs and go through Spec-Bench's own `evaluation/speed.py` and `equal.py`.

Layout, inside a compare `--output DIR` (one folder per repeat, as Spec-Bench keeps one folder per
run, `model_answer_temp0_run_1/` ...):

    DIR/spec-bench/run_1/<label>.jsonl   one line per question, for repeat 0
    DIR/spec-bench/run_2/<label>.jsonl   repeat 1 (with --repeat 2 or more)

Each line is what Spec-Bench's answer writer (evaluation/eval.py) writes:

    {"question_id": 481, "category": "rag", "answer_id": "...", "model_id": "smollm2-135m-pld-float32",
     "choices": [{"index": 0, "turns": [answer text per turn], "decoding_steps": [per turn],
                  "new_tokens": [per turn], "wall_time": [seconds per turn],
                  "accept_lengths": [tokens committed per target step, over all turns]}],
     "tstamp": 1733333333.0}

Every field comes from the decbench/sample/v1 record as measured (nothing is recomputed):
`question_id` is the sample id (an integer again when it was one), `answer_id` is derived from the
record (so rewriting a file gives the same ids) and `tstamp` is the record's `finished_at`.
Lines follow the plan's order, so the files of all profiles list the questions in the same order
(`equal.py` compares them line by line).

Durability: a line is appended (flushed, fsynced) right after its record reaches samples.jsonl;
on `--resume` the files are rewritten from the records (temp file + rename), so a line lost or cut
short by an interruption comes back and none is ever duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from decbench.compare.harness import SampleRecord

ANSWERS_DIR = "spec-bench"
CHOICE_FIELDS = ("turns", "decoding_steps", "new_tokens", "wall_time", "accept_lengths")
# shortuuid's alphabet (no 0, 1, I, O, l), as in Spec-Bench's answer ids
ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ID_LENGTH = 22


def run_folder(answers_dir: Path, repeat: int) -> Path:
    return answers_dir / f"run_{repeat + 1}"


def answer_path(answers_dir: Path, label: str, repeat: int) -> Path:
    return run_folder(answers_dir, repeat) / f"{label}.jsonl"


def question_id(sample_id: str) -> int | str:
    """Spec-Bench's question ids are integers; decbench keeps ids as strings."""
    return int(sample_id) if sample_id.isdigit() and str(int(sample_id)) == sample_id else sample_id


def model_id(record: SampleRecord) -> str:
    """`<model>-<profile label>-<dtype>`, like Spec-Bench's `vicuna-7b-v1.3-pld-float16`."""
    model = record.model.rstrip("/").rsplit("/", 1)[-1]
    dtype = record.environment.get("dtype")
    return "-".join(str(part) for part in (model, record.profile, dtype) if part)


def answer_id(record: SampleRecord) -> str:
    """22 characters of shortuuid's alphabet, fixed by the record (profile, sample, repeat,
    finish time), so that a rewritten file keeps its ids."""
    parts = (record.profile, record.sample_id, record.repeat, record.finished_at, record.model)
    key = "\0".join(str(part) for part in parts)
    number = int.from_bytes(hashlib.sha256(key.encode()).digest(), "big")
    chars = []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, len(ID_ALPHABET))
        chars.append(ID_ALPHABET[digit])
    return "".join(chars)


def timestamp(record: SampleRecord) -> float | None:
    finished = record.finished_at
    return datetime.fromisoformat(finished).timestamp() if finished else None


def answer_row(record: SampleRecord) -> dict[str, Any]:
    """One Spec-Bench answer line from one decbench/sample/v1 record."""
    choice: dict[str, Any] = {"index": 0}
    for name in CHOICE_FIELDS:
        choice[name] = list(getattr(record, name))
    return {
        "question_id": question_id(record.sample_id),
        "category": record.category,
        "answer_id": answer_id(record),
        "model_id": model_id(record),
        "choices": [choice],
        "tstamp": timestamp(record),
    }


class AnswerFiles:
    """The spec-bench/ folder of one compare output folder."""

    def __init__(self, output_dir: Path) -> None:
        self.folder = output_dir / ANSWERS_DIR

    def append(self, record: SampleRecord) -> None:
        """Append the answer line of one finished record and make it durable."""
        path = answer_path(self.folder, record.profile, record.repeat)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(answer_row(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, records: Iterable[SampleRecord]) -> None:
        """Replace every answer file by the lines of `records` (in their order), atomically per
        file; answer files no record backs any more are removed."""
        lines: dict[Path, list[str]] = {}
        for record in records:
            path = answer_path(self.folder, record.profile, record.repeat)
            lines.setdefault(path, []).append(json.dumps(answer_row(record)))
        stale = set(self.folder.glob("run_*/*.jsonl")) - set(lines)
        for path, rows in lines.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as f:
                f.write("".join(row + "\n" for row in rows))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        for path in stale:
            path.unlink()

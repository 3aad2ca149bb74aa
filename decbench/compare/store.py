"""The files of a compare run in `--output DIR`, written so that an interrupted run keeps every
finished sample and can be continued with `--resume DIR`:

    run.json       the plan: resolved profiles, the exact samples, repeats (written first)
    samples.jsonl  one self-contained decbench/sample/v1 record per finished run, appended,
                   flushed and fsynced as each one finishes
    summary.json   the decbench/compare/v1 summary, replaced atomically (temp file + rename)
    spec-bench/    Spec-Bench answer files, one per profile and repeat, kept in step with
                   samples.jsonl (decbench/compare/answers.py)

Records are self-contained (profile, sample, repeat, environment), so the files of runs made by
several processes can be concatenated and summarised together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decbench.compare.answers import AnswerFiles
from decbench.compare.harness import SampleRecord
from decbench.compare.plan import Plan
from decbench.errors import ConfigError
from decbench.jsonrecord import read_json

if TYPE_CHECKING:
    from decbench.compare.summary import CompareSummary

RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"

RecordKey = tuple[str, str, int]  # (profile label, sample id, repeat)


def record_key(record: SampleRecord) -> RecordKey:
    return record.key


def write_atomic(path: Path, data: Any) -> None:
    """JSON to `path` via a temp file in the same folder and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunStore:
    """One output folder. `create` starts a run; `resume` reopens one."""

    def __init__(self, folder: Path, plan: Plan, records: list[SampleRecord]) -> None:
        self.folder = folder
        self.plan = plan
        self.records = records
        self.answers = AnswerFiles(folder)
        self.answers.rewrite(records)  # on resume: exactly one answer line per kept record

    @property
    def samples_path(self) -> Path:
        return self.folder / SAMPLES_FILE

    @classmethod
    def create(cls, folder: Path, plan: Plan) -> RunStore:
        folder = folder.expanduser()
        if (folder / SAMPLES_FILE).is_file() and (folder / SAMPLES_FILE).stat().st_size:
            raise ConfigError(
                f"{folder} already holds a compare run; continue it with --resume {folder} "
                f"or choose another --output folder"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--output: cannot create folder {folder}: {e.strerror}") from e
        write_atomic(folder / RUN_FILE, plan.to_json())
        (folder / SAMPLES_FILE).touch()
        return cls(folder, plan, [])

    @classmethod
    def resume(cls, folder: Path) -> RunStore:
        folder = folder.expanduser()
        return cls(folder, read_plan(folder), read_records(folder / SAMPLES_FILE, repair=True))

    def done(self) -> set[RecordKey]:
        return {record_key(r) for r in self.records}

    def append(self, record: SampleRecord) -> None:
        """Append one finished record and make it durable before going on."""
        self._write(record)
        self.answers.append(record)

    def _write(self, record: SampleRecord) -> None:
        """One line to samples_path, flushed and fsynced; then the record is known as done."""
        line = json.dumps(record.to_json(), default=str)
        with self.samples_path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)

    def write_summary(self, summary: CompareSummary) -> Path:
        path = self.folder / SUMMARY_FILE
        write_atomic(path, summary.to_json())
        return path


def read_plan(folder: Path, flag: str = "--resume") -> Plan:
    """The plan stored in a run folder's run.json (`flag` names the option in errors)."""
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise ConfigError(f"{flag}: {folder} has no {RUN_FILE}; is it a compare --output?")
    return Plan.from_json(read_json(run_file), str(run_file))


def read_records(path: Path, repair: bool = False) -> list[SampleRecord]:
    """Records of a samples.jsonl. A last line cut short by an interruption is dropped (and, with
    `repair`, cut from the file so that appending continues cleanly); any other bad line is an
    error naming the line."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    parsed: list[tuple[int, Any]] = []  # (line number, JSON)
    good_bytes = 0
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        if not line.strip():
            good_bytes += len(line) + (0 if last else 1)
            continue
        try:
            record = json.loads(line)
            if last:  # complete JSON but no newline yet: the write was cut before "\n"
                raise ValueError("no trailing newline")
        except ValueError as e:
            if last or (number == len(lines) - 1 and not lines[-1].strip()):
                break  # the interrupted final record
            raise ConfigError(f"{path}:{number}: not a valid record: {e}") from e
        parsed.append((number, record))
        good_bytes += len(line) + 1
    if repair and good_bytes < len(raw):
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return [SampleRecord.from_json(data, f"{path}:{number}") for number, data in parsed]

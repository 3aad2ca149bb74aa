"""`compare` spread over processes and machines, on accelerate's process state.

Under `accelerate launch` (or `torchrun`), every process runs the same `decbench compare`
command. `Ranks.detect()` reads the launch through accelerate's `PartialState`; the plan is then
split *by prompt*: rank r takes samples r, r + world, r + 2·world, ... (lm-evaluation-harness
strides its documents the same way, but here nothing is padded with duplicate work, which would
distort timings), and every profile of one prompt runs on the same rank, so each speedup is
still a pair measured on one device.

The files of a sharded `--output DIR`:

    run.json                 the plan, written by rank 0 before any rank starts
    ranks/rank-R.jsonl       rank R's records, appended and fsynced as each finishes
    ranks/rank-R.done        written when rank R has finished its share (its host, threads)
    samples.jsonl            rank 0 merges every rank's records here once all are done, then
                             removes the rank files
    summary.json             the usual summary, plus `ranks` (how many, on which hosts)

Rank 0 waits for the other ranks through the `.done` files rather than a collective barrier, so
a rank with a longer share cannot trip the process group's timeout. `--resume DIR` under the
launcher re-runs only the records missing from samples.jsonl and every rank file, whichever rank
(and however many ranks) made them. `merge_folders` combines run folders made with the same plan
on machines that never talked to each other (a job array, say).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from decbench.compare.harness import SampleRecord
from decbench.compare.plan import Plan
from decbench.compare.store import (
    SAMPLES_FILE,
    RunStore,
    read_plan,
    read_records,
    record_key,
    write_atomic,
)
from decbench.errors import ConfigError, RunError
from decbench.jsonrecord import JsonRecord

if TYPE_CHECKING:
    from decbench.compare.summary import CompareSummary

RANKS_DIR = "ranks"
POLL_S = 2.0


@dataclass(frozen=True)
class Ranks:
    """This process's place in a launch (world 1 without a launcher)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    host: str = ""

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    @classmethod
    def detect(cls) -> Ranks:
        """From accelerate's PartialState when a launcher set WORLD_SIZE > 1, else one rank.
        On CPU the process group uses gloo; the state is only read, never used to reduce."""
        host = socket.gethostname()
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls(host=host)
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "0")) or _local_world(state)
        return cls(
            state.process_index, state.num_processes, state.local_process_index, local_world, host
        )

    def share(self, items: list[Any]) -> list[Any]:
        """This rank's stride of `items` (every world-th, from its rank)."""
        return items[self.rank :: self.world]

    def cpu_threads(self, cores: int | None = None) -> int:
        """Threads for this rank on CPU: the machine's cores split among its local ranks."""
        cores = cores or os.cpu_count() or 1
        return max(1, cores // self.local_world)

    def place(self, device: str) -> None:
        """Threads and device for this rank: on CPU its share of the cores (no
        oversubscription), on CUDA one device per local rank."""
        if not self.sharded:
            return
        if device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank % torch.cuda.device_count())
        else:
            torch.set_num_threads(self.cpu_threads())

    def environment(self) -> dict[str, Any]:
        return {"rank": self.rank, "world_size": self.world, "host": self.host}

    def barrier(self) -> None:
        """Every rank waits here for the others (a short wait: used only at start-up)."""
        if self.sharded:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


def _local_world(state: Any) -> int:
    nodes = int(os.environ.get("ACCELERATE_NUM_MACHINES", os.environ.get("GROUP_WORLD_SIZE", "1")))
    return max(1, state.num_processes // max(nodes, 1))


def parse_shard(text: str) -> Ranks:
    """--shard I/N: this job's place in a split made without a launcher."""
    index, slash, count = text.partition("/")
    try:
        ranks = Ranks(int(index), int(count), host=socket.gethostname())
    except ValueError:
        ranks = None
    if not slash or ranks is None or not 0 <= ranks.rank < ranks.world:
        raise ConfigError(f"--shard '{text}': expected I/N with 0 <= I < N, e.g. 0/4")
    return ranks


# -- the files of one rank -------------------------------------------------------------------
def rank_path(folder: Path, rank: int, suffix: str = ".jsonl") -> Path:
    return folder / RANKS_DIR / f"rank-{rank}{suffix}"


def all_records(folder: Path) -> list[SampleRecord]:
    """samples.jsonl and every rank file, each record once (the first copy of a key wins)."""
    records = read_records(folder / SAMPLES_FILE)
    for path in sorted((folder / RANKS_DIR).glob("rank-*.jsonl")):
        records += read_records(path)
    return unique(records)


def unique(records: Iterable[SampleRecord]) -> list[SampleRecord]:
    seen: set[tuple] = set()
    kept = []
    for record in records:
        key = record_key(record)
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


class RankStore(RunStore):
    """A rank's view of a sharded output folder: it knows every record made so far (to skip
    them and to pair with them) and appends its own to ranks/rank-R.jsonl. It never writes the
    summary; rank 0 does after the merge."""

    def __init__(self, folder: Path, plan: Plan, ranks: Ranks) -> None:
        # no RunStore.__init__: the answer files are rank 0's, rewritten after the merge
        self.folder, self.plan, self.ranks = folder, plan, ranks
        path = self.samples_path
        path.parent.mkdir(parents=True, exist_ok=True)
        rank_path(folder, ranks.rank, ".done").unlink(missing_ok=True)  # from an earlier launch
        read_records(path, repair=True)  # cut a record an interruption left half written
        path.touch()
        self.records = all_records(folder)

    @property
    def samples_path(self) -> Path:
        return rank_path(self.folder, self.ranks.rank)

    def append(self, record: SampleRecord) -> None:
        record.environment = {**record.environment, **self.ranks.environment()}
        self._write(record)  # the answer files are rank 0's, after the merge

    def write_summary(self, summary: CompareSummary) -> Path:
        return self.folder / "summary.json"  # the merged summary is rank 0's, after every rank

    def finish(self, environment: dict[str, Any]) -> None:
        write_atomic(rank_path(self.folder, self.ranks.rank, ".done"), environment)


def wait_for_ranks(
    folder: Path, world: int, progress: Callable[[str], None], timeout_s: float | None = None
) -> list[dict[str, Any]]:
    """Rank 0: wait until every rank has written its .done file; returns their environments."""
    start = time.monotonic()
    told = False
    while True:
        done = [rank_path(folder, r, ".done") for r in range(world)]
        missing = [r for r, path in enumerate(done) if not path.is_file()]
        if not missing:
            return [json.loads(path.read_text(encoding="utf-8")) for path in done]
        if not told:
            progress(f"rank 0 done; waiting for ranks {', '.join(map(str, missing))}")
            told = True
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise RunError(f"ranks {missing} did not finish within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def merge_ranks(folder: Path, plan: Plan) -> RunStore:
    """Rank 0, after every rank is done (or a one-process --resume that finds rank files):
    every record into samples.jsonl in plan order (atomically) and the answer files rewritten
    from them; then the rank files go."""
    records = in_plan_order(all_records(folder), plan)
    write_records(folder / SAMPLES_FILE, records)
    store = RunStore(folder, plan, records)
    for path in (folder / RANKS_DIR).glob("rank-*"):
        path.unlink()
    return store


def in_plan_order(records: list[SampleRecord], plan: Plan) -> list[SampleRecord]:
    """Repeat by repeat, sample by sample, profile by profile, as one process runs them."""
    samples = {s.id: i for i, s in enumerate(plan.samples)}
    labels = {label: i for i, label in enumerate(plan.labels)}

    def place(record: SampleRecord) -> tuple[int, int, int]:
        sample = samples.get(record.sample_id, len(samples))
        return (record.repeat, sample, labels.get(record.profile, len(labels)))

    return sorted(records, key=place)


def write_records(path: Path, records: list[SampleRecord]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_json(), default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class RanksSummary(JsonRecord):
    """What the summary of a sharded run says of the ranks that took part."""

    world_size: int
    hosts: list[str]
    per_rank: list[dict[str, Any]]  # each rank's .done file: rank, host, threads, records


def ranks_summary(environments: list[dict[str, Any]]) -> RanksSummary:
    hosts = sorted({e.get("host", "") for e in environments})
    return RanksSummary(len(environments), hosts, environments)


# -- merging folders made without a launcher -----------------------------------------------
PLAN_VOLATILE = ("created",)  # differs between folders of the same plan


def plan_difference(a: dict[str, Any], b: dict[str, Any], path: str = "") -> str | None:
    """The first key path where two plans differ (None when they are the same plan)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if not path and key in PLAN_VOLATILE:
                continue
            where = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                return f"{where} is only in one of them"
            found = plan_difference(a[key], b[key], where)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} has {len(a)} entries in one and {len(b)} in the other"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = plan_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} vs {b!r}"


def merge_folders(folders: list[Path], out: Path) -> tuple[RunStore, int]:
    """One run folder `out` from the records of `folders` (same plan). Returns the store and
    how many duplicate records were dropped (a sample run in two folders keeps its first)."""
    if len(folders) < 2:
        raise ConfigError("--merge needs at least two run folders")
    plans = [read_plan(folder.expanduser(), "--merge") for folder in folders]
    for folder, plan in zip(folders[1:], plans[1:], strict=True):
        found = plan_difference(plans[0].to_json(), plan.to_json())
        if found:
            raise ConfigError(
                f"--merge: {folder} was made with another plan than {folders[0]} ({found})"
            )
    resolved = {folder.expanduser().resolve() for folder in folders}
    if out.expanduser().resolve() in resolved:
        raise ConfigError("--merge writes a new run folder: give --output a folder not merged")
    everything = [r for folder in folders for r in all_records(folder.expanduser())]
    records = in_plan_order(unique(everything), plans[0])
    RunStore.create(out, plans[0])
    write_records(out.expanduser() / SAMPLES_FILE, records)
    return RunStore(out.expanduser(), plans[0], records), len(everything) - len(records)


# -- one sharded compare ---------------------------------------------------------------------
def run_sharded(
    plan: Plan,
    folder: Path,
    resume: bool,
    ranks: Ranks,
    progress: Callable[[str], None],
    on_event: Callable[[Any], None],
    baseline: str | None = None,
) -> tuple[CompareSummary, RunStore] | None:
    """This rank's share of the plan into `folder`; on rank 0 the merged (summary, store) once
    every rank is done, on the others None."""
    from decbench.compare import run_compare, summarize

    if ranks.main:  # the folder and its plan exist before any rank starts
        if resume:
            RunStore.resume(folder)  # repairs a cut samples.jsonl
        else:
            RunStore.create(folder, plan)
    ranks.barrier()
    plan = read_plan(folder.expanduser())
    ranks.place(plan.profiles[0].profile.backend.device)
    store = RankStore(folder.expanduser(), plan, ranks)
    before = len(store.records)
    run_compare(plan, store, progress, on_event, baseline, share=ranks.share)
    mine = len(store.records) - before
    store.finish({**ranks.environment(), "threads": torch.get_num_threads(), "records": mine})
    if not ranks.main:
        progress(f"rank {ranks.rank}: done; rank 0 merges {folder}")
        return None
    environments = wait_for_ranks(store.folder, ranks.world, progress)
    merged = merge_ranks(store.folder, plan)
    summary = summarize(plan, merged.records, merged.folder, baseline)
    summary.ranks = ranks_summary(environments)
    merged.write_summary(summary)
    return summary, merged


def resume_store(folder: Path) -> RunStore:
    """A one-process --resume: rank files left by a sharded run are merged in first."""
    folder = folder.expanduser()
    store = RunStore.resume(folder)
    if any((folder / RANKS_DIR).glob("rank-*.jsonl")):
        store = merge_ranks(folder, store.plan)
    return store

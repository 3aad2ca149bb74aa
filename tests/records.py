"""Hand-made compare records and summaries for tests of the arithmetic and the views: every
field a neutral value (zeros, None, empty) unless a test names it."""

from __future__ import annotations

from typing import Any

from decbench.compare.harness import SampleRecord
from decbench.compare.memory import PeakMemory
from decbench.compare.stats import GroupMetrics, ProfileResults
from decbench.compare.summary import CompareSummary, ProfileEntry
from decbench.metrics.acceptance import AcceptanceStats
from decbench.suites import SuiteInfo


def sample_record(
    profile: str = "m", sample_id: str = "s", repeat: int = 0, **values: Any
) -> SampleRecord:
    """A one-turn record of `profile` on `sample_id`; `token_ids` set the turns (and the token
    counts follow them unless given); `stats` may be a dict of totals."""
    token_ids = values.pop("token_ids", [[1, 2, 3]])
    stats = values.pop("stats", None)
    if isinstance(stats, dict):
        stats = AcceptanceStats.from_totals(stats)
    turns = len(token_ids)
    fields: dict[str, Any] = {
        "profile": profile,
        "method": profile,
        "profile_source": profile,
        "lossless": True,
        "reference": False,
        "model": "tiny",
        "sample_id": sample_id,
        "category": "c",
        "repeat": repeat,
        "prompts": ["prompt"] * turns,
        "turns": ["answer"] * turns,
        "token_ids": token_ids,
        "prompt_tokens": [5] * turns,
        "new_tokens": [len(ids) for ids in token_ids],
        "wall_time": [1.0] * turns,
        "decoding_steps": [len(ids) for ids in token_ids],
        "forward_calls": [len(ids) for ids in token_ids],
        "accept_lengths": [1 for ids in token_ids for _ in ids],
        "finish_reasons": ["length"] * turns,
        "ttft_s": [0.1] * turns,
        "tokens_per_s": 1.0,
        "stats": stats or AcceptanceStats(),
        "phases": {},
        "memory": PeakMemory("rss", 100.0, 5.0),
        "params": {},
        "sampling": {},
        "generation": {},
        "environment": {},
        "finished_at": "2026-01-01T00:00:00+00:00",
    }
    return SampleRecord(**{**fields, **values})


def group_metrics(**values: Any) -> GroupMetrics:
    fields: dict[str, Any] = {
        "runs": 1,
        "tokens": 0,
        "wall_time_s": 0.0,
        "tokens_per_s": None,
        "mat": None,
        "acceptance_rate": None,
        "steps": 0,
        "drafted": 0,
        "accepted": 0,
        "forward_calls": None,
        "forward_calls_per_token": None,
        "peak_memory_mb": None,
        "peak_memory_delta_mb": None,
    }
    return GroupMetrics(**{**fields, **values})


def profile_entry(label: str, method: str) -> ProfileEntry:
    return ProfileEntry(
        label=label,
        method=method,
        source=method,
        lossless=True,
        reference=False,
        model="m",
        model_fingerprint=None,
        device="cpu",
        dtype="float32",
        kernels=None,
        params={},
        sampling={},
        generation={},
    )


def compare_summary(overall: dict[str, tuple[str, GroupMetrics]], **values: Any) -> CompareSummary:
    """A summary of the profiles `overall` names (label -> (method, its overall metrics)), the
    first the baseline, on a one-category suite."""
    suite = SuiteInfo("tiny", "test prompts", "test", ["c"], 1, "sha256:0")
    fields: dict[str, Any] = {
        "suite": suite,
        "selection": {},
        "baseline": next(iter(overall)),
        "profiles": [profile_entry(label, method) for label, (method, _) in overall.items()],
        "repeat": 1,
        "warmup": 0,
        "complete": True,
        "records": len(overall),
        "expected_records": len(overall),
        "environment": {"model": "m", "device": "cpu", "dtype": "float32"},
        "results": {
            label: ProfileResults(overall=m, categories={"c": m})
            for label, (_, m) in overall.items()
        },
        "output_dir": None,
    }
    return CompareSummary(**{**fields, **values})

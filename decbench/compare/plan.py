"""The plan of a compare run (decbench/compare-run/v1, the run.json of `--output DIR`):
the resolved profiles with their labels, the exact samples, the baseline, repeats and warm-ups.
It is fixed before anything runs, so an interrupted run continues as planned and the records of
several processes made with one plan summarise together."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from decbench.compare.harness import check_comparable, unique_labels
from decbench.errors import ConfigError, unknown
from decbench.jsonrecord import JsonRecord, codec
from decbench.profiles import TABLES, Profile, build
from decbench.suites import Sample, Suite

SCHEMA_RUN = "decbench/compare-run/v1"


@dataclass
class PlannedProfile(JsonRecord):
    """A profile under its label; in JSON its resolved tables (Profile.to_dict)."""

    label: str
    profile: Profile

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "profile": self.profile.to_dict()}

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> PlannedProfile:
        """Rebuilt (and re-validated) from the resolved tables."""
        if not isinstance(data, dict) or not isinstance(data.get("profile"), dict):
            raise ConfigError(f"{where}: expected a profile entry {{label, profile}}, got {data!r}")
        label = str(data.get("label", ""))
        table = data["profile"]
        raw = {key: table[key] for key in (*TABLES, "method", "description") if key in table}
        return cls(label, build(raw, table.get("source", label)))


@dataclass(kw_only=True)
class Plan(JsonRecord):
    schema: str = SCHEMA_RUN
    # in JSON the suite's name, source, categories, count and checksum, and its samples
    suite: Suite = field(metadata=codec(Suite.to_dict, Suite.from_dict))
    selection: dict[str, Any]  # the categories and limit asked for
    profiles: list[PlannedProfile]
    baseline: str  # a label
    repeat: int
    warmup: int
    created: str  # ISO time

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.profiles]

    @property
    def samples(self) -> list[Sample]:
        return self.suite.samples


def make_plan(
    profiles: list[Profile],
    suite: Suite,
    baseline: str | None = None,
    repeat: int = 1,
    warmup: int = 1,
    selection: dict[str, Any] | None = None,
    labels: list[str] | None = None,
) -> Plan:
    """Everything a run needs (what `--output` stores in run.json). `labels` names the profiles
    (default: file stem or method name; compare --sweep names variants)."""
    if not profiles:
        raise ConfigError("compare needs at least one profile (a TOML file or --method NAME)")
    if repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {repeat}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup}")
    if not suite.samples:
        raise ConfigError(f"suite '{suite.name}' has no samples left after the selection")
    if labels is not None and len(set(labels)) != len(labels):
        raise ConfigError(f"profile labels must be unique, got {', '.join(labels)}")
    labels = labels or unique_labels(profiles)
    check_comparable(labels, profiles)
    baseline = baseline or labels[0]
    if baseline not in labels:
        raise unknown("baseline", baseline, labels, where="--baseline")
    return Plan(
        suite=suite,
        selection=selection or {},
        profiles=[PlannedProfile(label, p) for label, p in zip(labels, profiles, strict=True)],
        baseline=baseline,
        repeat=repeat,
        warmup=warmup,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def plan_profiles(plan: Plan) -> tuple[list[str], list[Profile]]:
    """The plan's labels and profiles, in plan order."""
    return plan.labels, [p.profile for p in plan.profiles]


def check_same_plan(stored: Plan, fresh: Plan, folder: Path) -> None:
    """Options given with --resume must describe the stored run (same profiles, suite selection
    and repeats); anything else is refused with the reason."""
    if stored.labels != fresh.labels or [_settings(p) for p in stored.profiles] != [
        _settings(p) for p in fresh.profiles
    ]:
        raise ConfigError(
            f"--resume {folder}: the profiles given ({', '.join(fresh.labels)}) differ from the "
            f"stored run's ({', '.join(stored.labels)}); drop them to continue as planned"
        )
    if stored.suite.checksum() != fresh.suite.checksum() or stored.repeat != fresh.repeat:
        raise ConfigError(
            f"--resume {folder}: the suite, selection or --repeat differ from the stored run; "
            "drop them to continue as planned"
        )


def _settings(planned: PlannedProfile) -> dict[str, Any]:
    """A profile's settings, wherever it was read from."""
    return planned.profile.to_dict() | {"source": ""}

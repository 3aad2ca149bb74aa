"""`compare --sweep TABLE.KEY=V1,V2,...`: one profile per value of a knob, for trade-off curves.

A sweep applies to every profile that has the key (a method option such as `method.threshold`
exists only for the methods that declare it); the others run once, unchanged, so an AR `greedy`
row can sit beside a dLLM sweep. Several sweeps that apply to one profile move together (the i-th
values of each form the i-th variant), which is how a knob made of several keys (Prophet's three
gap thresholds) is swept; they must then list the same number of values. Variant labels name the
values: `dllm-threshold[threshold=0.7]`. `LABEL:TABLE.KEY=...` limits a sweep to the profile of
that label (`dllm-confidence:method.tokens_per_step=1,2,4`), for keys that several methods share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from decbench.errors import ConfigError
from decbench.profiles import TABLES, Profile, parse_override


@dataclass(frozen=True)
class Sweep:
    table: str  # method or a profile table
    key: str
    values: tuple[str, ...]  # as written (TOML values), in order
    only: str = ""  # the label of the one profile it applies to ("" = every profile with the key)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.key}"


def parse_sweep(text: str) -> Sweep:
    """'method.threshold=0.5,0.9' -> Sweep('method', 'threshold', ('0.5', '0.9')); a leading
    'LABEL:' limits it to that profile."""
    key, sep, values = text.partition("=")
    only, colon, key = key.rpartition(":")
    if colon and not only.strip():
        raise ConfigError(f"--sweep '{text}': expected LABEL: before the key")
    table, _, name = key.strip().partition(".")
    items = tuple(v.strip() for v in values.split(",") if v.strip())
    if not sep or not name or not items:
        raise ConfigError(
            f"--sweep '{text}': expected TABLE.KEY=V1,V2,... (e.g. method.threshold=0.5,0.7,0.9)"
        )
    if table != "method" and table not in TABLES:
        raise ConfigError(
            f"--sweep '{text}': unknown table '{table}' (method, {', '.join(TABLES)})"
        )
    for value in items:
        parse_override(f"{table}.{name}={value}")
    return Sweep(table, name, items, only.strip())


def applies(sweep: Sweep, profile: Profile) -> bool:
    if sweep.only and sweep.only != profile.label:
        return False
    holder = profile.options if sweep.table == "method" else getattr(profile, sweep.table)
    return hasattr(holder, sweep.key)


def variants(profile: Profile, sweeps: list[Sweep]) -> list[tuple[str, list[str]]]:
    """(label suffix, extra --set overrides) of each variant of `profile`; one unchanged variant
    when no sweep applies to it."""
    mine = [s for s in sweeps if applies(s, profile)]
    if not mine:
        return [("", [])]
    counts = {len(s.values) for s in mine}
    if len(counts) > 1:
        listed = ", ".join(f"{s.name} ({len(s.values)})" for s in mine)
        raise ConfigError(
            f"--sweep: the sweeps of profile '{profile.label}' move together and need the same "
            f"number of values; got {listed}"
        )
    out = []
    for i in range(counts.pop()):
        suffix = ",".join(f"{s.key}={s.values[i]}" for s in mine)
        out.append((f"[{suffix}]", [f"{s.name}={s.values[i]}" for s in mine]))
    return out


def check_used(sweeps: list[Sweep], profiles: list[Profile]) -> None:
    for sweep in sweeps:
        if not any(applies(sweep, p) for p in profiles):
            labels = ", ".join(p.label for p in profiles)
            where = f"{sweep.only}:" if sweep.only else ""
            raise ConfigError(f"--sweep {where}{sweep.name}: no profile has that key ({labels})")


def expand(specs: list[Any], build: Any, sweeps: list[Sweep]) -> tuple[list[Profile], list[str]]:
    """The profiles and labels of a compare: each spec is built once (`build(spec, [])`), then
    once per variant (`build(spec, extra_sets)`)."""
    bases = [build(spec, []) for spec in specs]
    check_used(sweeps, bases)
    profiles, labels = [], []
    for spec, base in zip(specs, bases, strict=True):
        for suffix, extra in variants(base, sweeps):
            profiles.append(build(spec, extra) if extra else base)
            labels.append(base.label + suffix)
    return profiles, labels

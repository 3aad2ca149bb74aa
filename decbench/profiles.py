"""Profiles: TOML files that wire a model, a backend, a method with its options, generation
limits and sampling settings. Validated against the declared dataclasses, so an unknown key is
an error that names the file, the key and the valid keys.

    extends = "greedy.toml"        # optional; relative to this file (or a built-in profile name)
    [model]      name = "smollm2-135m"
    [backend]    device = "cpu"  dtype = "float32"  threads = 0  kernels = "auto"
    [method]     name = "pld"  k = 10  max_ngram = 3
    [generation] max_new_tokens = 128  stop = []  chat = true
    [sampling]   temperature = 0.0  top_p = 1.0  seed = 0
    [constraint] kind = "json-schema"  schema = "person.json"   (see decbench/constraints)
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decbench.decoders.registry import get_decoder
from decbench.errors import ConfigError, suggest, unknown
from decbench.files import read_text
from decbench.options import check_options
from decbench.settings import (
    BackendSettings,
    ConstraintSettings,
    GenerationSettings,
    ModelSettings,
    SamplingSettings,
)

TABLES: dict[str, type] = {
    "model": ModelSettings,
    "backend": BackendSettings,
    "generation": GenerationSettings,
    "sampling": SamplingSettings,
    "constraint": ConstraintSettings,
}
TOP_KEYS = {"extends", "description", "method", *TABLES}


def builtin_dir() -> Path:
    """The repository's profiles/ folder (decbench is installed editable from the checkout)."""
    return Path(__file__).resolve().parent.parent / "profiles"


@dataclass
class Profile:
    source: str  # file path, or "method:NAME" for --method shorthand
    method: str
    options: Any  # the method's Options dataclass instance
    model: ModelSettings = field(default_factory=ModelSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    constraint: ConstraintSettings = field(default_factory=ConstraintSettings)
    description: str = ""

    @property
    def label(self) -> str:
        return Path(self.source).stem if self.source.endswith(".toml") else self.method

    def to_dict(self) -> dict[str, Any]:
        data = {name: dataclasses.asdict(getattr(self, name)) for name in TABLES}
        data["method"] = {"name": self.method, **dataclasses.asdict(self.options)}
        return {"source": self.source, "description": self.description, **data}


# -- reading -------------------------------------------------------------------------------------
def read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: profile not found{_builtin_hint(path)}")
    try:
        return tomllib.loads(read_text(path, f"profile '{path}'"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: malformed TOML: {e}") from e


def _builtin_hint(path: Path) -> str:
    names = [p.stem for p in builtin_dir().glob("*.toml")]
    hint = suggest(path.stem, names)
    return f"{hint} (built-in profiles are in {builtin_dir()})" if hint else ""


def find_profile(name: str) -> Path:
    """A path, or the name of a built-in profile ('pld' or 'pld.toml')."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    builtin = builtin_dir() / (name if name.endswith(".toml") else f"{name}.toml")
    if "/" not in name and builtin.is_file():
        return builtin
    raise ConfigError(f"{name}: profile not found{_builtin_hint(path)}")


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a profile and everything it extends, merged (the child wins, table by table)."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"{path}: 'extends' forms a cycle: {chain}")
    raw = read_toml(path)
    for key in raw:
        if key not in TOP_KEYS:
            raise unknown("table or key", key, TOP_KEYS, where=str(path))
    parent_name = raw.pop("extends", None)
    if parent_name is None:
        return raw
    if not isinstance(parent_name, str):
        raise ConfigError(f"{path}: 'extends' must be a file name string")
    parent_path = path.parent / parent_name
    if not parent_path.is_file():
        parent_path = find_profile(parent_name)
    return merge(load_raw(parent_path, (*_seen, path)), raw)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            if key == "method" and value.get("name", out[key].get("name")) != out[key].get("name"):
                out[key] = dict(value)  # a different method: the parent's options don't apply
            else:
                out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


# -- overrides -----------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, str, Any]:
    """'method.k=4' -> ('method', 'k', 4). Values are read as TOML, else kept as strings."""
    key, sep, value = text.partition("=")
    table, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ConfigError(f"--set '{text}': expected TABLE.KEY=VALUE (e.g. method.k=4)")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return table, name, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[str, str, Any]]) -> dict[str, Any]:
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for table, key, value in overrides:
        if table != "method" and table not in TABLES:
            raise unknown("table", table, [*TABLES, "method"], where="--set")
        if table == "method" and key == "name" and value != raw.get("method", {}).get("name"):
            raw["method"] = {}
        raw.setdefault(table, {})[key] = value
    return raw


# -- validation ----------------------------------------------------------------------------------
def build(raw: dict[str, Any], source: str) -> Profile:
    """Validate a merged raw profile into typed settings."""
    method_table = dict(raw.get("method") or {})
    if not isinstance(raw.get("method", {}), dict):
        raise ConfigError(f"{source}: [method] must be a table")
    name = method_table.pop("name", None)
    if name is None:
        raise ConfigError(f"{source}: [method] needs a 'name' (see `decbench methods`)")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: [method] name must be a string")
    try:
        decoder = get_decoder(name)
    except ConfigError as e:
        raise ConfigError(f"{source}: [method] {e}") from e
    options = fill(decoder.Options, method_table, f"{source}: [method]", allowed_extra=("name",))
    check_ranges(options, "method", source)
    tables = {}
    for table, cls in TABLES.items():
        values = raw.get(table) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: '{table}' must be a table")
        tables[table] = fill(cls, values, f"{source}: [{table}]")
        check_ranges(tables[table], table, source)
    description = raw.get("description", "")
    return Profile(source=source, method=name, options=options, description=description, **tables)


def check_ranges(values: Any, table: str, source: str) -> None:
    """The one range check of a profile's values: the ranges `values` (a table's dataclass)
    declares and its validate() hook (decbench/options.py). It runs here, where TOML, --set and
    the CLI flags meet, so every bad value names the file and is refused before anything loads;
    run.check_profile checks only what spans tables, and a decoder opened from this profile does
    not check its options again (Decoder.__init__)."""
    try:
        check_options(values, table)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from e


def fill(cls: type, values: dict[str, Any], where: str, allowed_extra: tuple[str, ...] = ()) -> Any:
    """Instantiate dataclass `cls` from `values`, checking keys and types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            valid = [*names, *allowed_extra] or ["(none: this method has no options)"]
            raise unknown("key", key, valid, where=where)
        kwargs[key] = coerce(value, hints[key], f"{where} {key}")
    return cls(**kwargs)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a TOML value against a field's type; ints are accepted where floats are, and a
    union (`int | str`) takes a value that any of its types takes."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _coerce_union(value, typing.get_args(hint), where)
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_show(value)}")
        return {str(k): coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of {item.__name__}, got {_show(value)}")
        return [coerce(v, item, where) for v in value]
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        raise ConfigError(f"{where}: expected {expected.get(hint, hint)}, got {_show(value)}")
    return value


def _coerce_union(value: Any, arms: tuple[Any, ...], where: str) -> Any:
    for arm in arms:
        if arm is type(None):
            if value is None:
                return value
            continue
        try:
            return coerce(value, arm, where)
        except ConfigError:
            continue
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    names = " or ".join(expected.get(a, str(a)) for a in arms if a is not type(None))
    raise ConfigError(f"{where}: expected {names}, got {_show(value)}")


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# -- entry points --------------------------------------------------------------------------------
def load_profile(name: str, overrides: list[tuple[str, str, Any]] = ()) -> Profile:
    path = find_profile(name)
    return build(apply_overrides(load_raw(path), list(overrides)), str(path))


def method_profile(method: str, overrides: list[tuple[str, str, Any]] = ()) -> Profile:
    """`--method NAME`: the built-in profile of that name when there is one, else defaults."""
    builtin = builtin_dir() / f"{method}.toml"
    if builtin.is_file():
        raw = load_raw(builtin)
        source = str(builtin)
    else:
        get_decoder(method)  # did-you-mean for unknown names
        raw, source = {"method": {"name": method}}, f"method:{method}"
    return build(apply_overrides(raw, list(overrides)), source)


def list_builtin() -> list[dict[str, str]]:
    rows = []
    for path in sorted(builtin_dir().glob("*.toml")):
        raw = load_raw(path)
        rows.append(
            {
                "name": path.stem,
                "path": str(path),
                "method": str((raw.get("method") or {}).get("name", "(inherited)")),
                "description": str(raw.get("description", "")),
            }
        )
    return rows

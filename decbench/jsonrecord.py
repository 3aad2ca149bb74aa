"""Records as dataclasses, dicts only at the JSON boundary (STYLE.md rule 10).

A record type subclasses `JsonRecord`: `to_json()` is the plain dict that gets written (field
order is key order, nested dataclasses become nested objects) and `from_json(data, where)` builds
the object back from parsed JSON, checking keys and types against the field annotations. Every
error names the place (`where`, then the key path) and what was expected. A record with a
`schema` field refuses a document of another schema.

Field metadata covers the keys that a document does not always carry:

- OMIT_NONE: the key is left out while the value is None (keys added after files were written:
  a file without the key reads back as None);
- EMPTY_IS_NONE: None is written as {} and {} reads back as None (an empty table that means
  "nothing measured");
- codec(encode, decode): the field has its own JSON form (AcceptanceStats as its totals);
- a field whose default is ABSENT is left out while it stays ABSENT, for keys where a missing key
  and null mean different things.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from decbench.errors import ConfigError

OMIT_NONE = {"json": "omit_none"}
EMPTY_IS_NONE = {"json": "empty_is_none"}


def codec(encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> dict[str, Any]:
    """Field metadata: the value's own JSON form, `encode(value)`, read back by `decode(data)`."""
    return {"codec": (encode, decode)}


class Absent:
    """The type of ABSENT: the value of a key the document left out. Falsy."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = Absent()


class JsonRecord:
    """Mixin for dataclasses that are written as JSON."""

    def to_json(self) -> dict[str, Any]:
        return encode_fields(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> Self:
        return decode_fields(cls, data, where or cls.__name__, "")


# -- writing -------------------------------------------------------------------------------------
def encode(value: Any) -> Any:
    """Plain JSON data of `value`: dataclasses as objects, tuples as lists, int keys as strings."""
    if isinstance(value, JsonRecord):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return encode_fields(value)
    if isinstance(value, dict):
        return {str(k) if isinstance(k, int) else k: encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def encode_fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        how = f.metadata.get("json")
        if value is ABSENT or (value is None and how == "omit_none"):
            continue
        if value is None and how == "empty_is_none":
            out[f.name] = {}
        elif "codec" in f.metadata and value is not None:
            out[f.name] = f.metadata["codec"][0](value)
        else:
            out[f.name] = encode(value)
    return out


# -- reading -------------------------------------------------------------------------------------
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fail(where: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {path}: {message}" if path else f"{where}: {message}")


def _show(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), f"{type(value).__name__} {value!r}")


def decode_fields(cls: type, data: Any, where: str, path: str) -> Any:
    """An instance of dataclass `cls` from the JSON object `data`."""
    if not isinstance(data, dict):
        raise _fail(where, path, f"expected an object, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    extra = [key for key in data if key not in fields]
    if extra:
        raise _fail(where, path, f"unknown key '{extra[0]}' (expected: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        inner = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _fail(where, path, f"missing key '{name}'")
            continue
        value = data[name]
        if f.metadata.get("json") == "empty_is_none" and value == {}:
            kwargs[name] = None
        elif "codec" in f.metadata and value is not None:
            try:
                kwargs[name] = f.metadata["codec"][1](value)
            except (TypeError, ValueError, KeyError, AttributeError) as e:
                raise _fail(where, inner, f"not readable: {e!r}") from e
        else:
            kwargs[name] = decode(_hints(cls)[name], value, where, inner)
    schema = fields.get("schema")
    if schema is not None and schema.default is not dataclasses.MISSING:
        got = kwargs.get("schema", schema.default)
        if got != schema.default:
            raise _fail(where, path, f"expected schema {schema.default}, got {got!r}")
    return cls(**kwargs)


def decode(hint: Any, value: Any, where: str, path: str) -> Any:
    """`value` checked against the annotation `hint` (and built into dataclasses)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        return _decode_union(typing.get_args(hint), value, where, path)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list):
            raise _fail(where, path, f"expected a list, got {_show(value)}")
        item = (typing.get_args(hint) or (Any,))[0]
        items = [decode(item, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if tuple in (origin, hint) else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _fail(where, path, f"expected an object, got {_show(value)}")
        key, item = typing.get_args(hint) or (str, Any)
        return {
            _key(key, k, where, path): decode(item, v, where, f"{path}.{k}")
            for k, v in value.items()
        }
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if issubclass(hint, JsonRecord) and "from_json" in vars(hint):  # its own JSON form
            return hint.from_json(value, f"{where}: {path}" if path else where)
        return decode_fields(hint, value, where, path)
    if not _is_a(hint, value):
        names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
        raise _fail(where, path, f"expected {names.get(hint, hint)}, got {_show(value)}")
    return value


def _is_a(hint: Any, value: Any) -> bool:
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    return True


def _decode_union(arms: tuple[Any, ...], value: Any, where: str, path: str) -> Any:
    if value is None:
        if type(None) in arms:
            return None
        raise _fail(where, path, "expected a value, got null")
    present = [a for a in arms if a not in (type(None), Absent)]
    for arm in present[:-1]:  # e.g. int | str: the first arm that takes the value
        try:
            return decode(arm, value, where, path)
        except ConfigError:
            continue
    return decode(present[-1], value, where, path)


def _key(hint: Any, key: str, where: str, path: str) -> Any:
    if hint is int:
        try:
            return int(key)
        except ValueError as e:
            raise _fail(where, path, f"expected integer keys, got '{key}'") from e
    return key


def read_json(path: Path) -> Any:
    """A JSON file, parsed; a missing or damaged file is a ConfigError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e.msg}") from e

"""Reading the user's text files (prompts, profiles, suites, prompt lists): one error for each way
a file can be unreadable, naming the file, so that no decoding error surfaces as a traceback."""

from __future__ import annotations

from pathlib import Path

from decbench.errors import ConfigError


def decode_text(data: bytes, what: str) -> str:
    """UTF-8 text, or a ConfigError naming the source, the offending byte and the fix."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1].hex()
        raise ConfigError(
            f"{what} is not UTF-8 text (byte 0x{bad} at offset {e.start}: {e.reason}); "
            "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from e


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; `what` names it in errors ("prompt file 'a.txt'")."""
    try:
        data = path.read_bytes()
    except IsADirectoryError as e:
        raise ConfigError(f"{what} is a directory, not a file") from e
    except OSError as e:
        raise ConfigError(f"cannot read {what}: {e.strerror}") from e
    return decode_text(data, what)

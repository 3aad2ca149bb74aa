"""The error hierarchy. The CLI maps each class to one exit code in one place (cli/app.py)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DecbenchError(Exception):
    """Base class. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(DecbenchError):
    """Bad input from the user: a profile, a flag, a prompt. Exit 2."""

    exit_code = 2


class ModelError(DecbenchError):
    """A model that cannot be found or loaded. Exit 1: the input may be right, the machine lacks it."""

    exit_code = 1


class RunError(DecbenchError):
    """A failure while running a decoder. Exit 1."""

    exit_code = 1


def suggest(word: str, choices: Iterable[str]) -> str:
    """A did-you-mean suffix (with leading '; ') or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown(kind: str, word: str, choices: Iterable[str], where: str = "") -> ConfigError:
    """The one shape of every 'unknown X' error: names the value, the valid ones and a suggestion."""
    choices = sorted(choices)
    loc = f"{where}: " if where else ""
    return ConfigError(
        f"{loc}unknown {kind} '{word}'{suggest(word, choices)} (valid: {', '.join(choices)})"
    )


def check_choice(key: str, value: str, choices: Iterable[str]) -> None:
    """Raise a ConfigError naming `key` unless `value` is one of `choices`."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(choices)}")

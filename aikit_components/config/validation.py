"""Checking a configuration layer against the defaults: known keys must have the default's type,
secrets must be strings, unknown keys become warnings. Errors name the key and where it was set."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from .defaults import DEFAULTS, NUMBER_KEYS, OPEN_SECTIONS
from .secrets import Secret, is_secret_key, secret_indirection
from .toml_out import toml_value


def kind_of_default(section: str, key: str) -> str | None:
    """The expected kind of a known key: "int", "number", "bool", "str", "list", or None."""
    if section not in DEFAULTS or key not in DEFAULTS[section]:
        return None
    if f"{section}.{key}" in NUMBER_KEYS:
        return "number"
    return _word(DEFAULTS[section][key], _DEFAULT_KINDS)


def _word(value: Any, words: tuple[tuple[type | tuple[type, ...], str], ...]) -> str | None:
    """The word of the first ``(types, word)`` of ``words`` that ``value`` is an instance of."""
    for types, word in words:
        if isinstance(value, types):
            return word
    return None


# The first that matches wins (a bool is also an int).
_DEFAULT_KINDS = ((bool, "bool"), (int, "int"), (float, "number"), (str, "str"), (list, "list"))
_TYPE_NAMES = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), ((str, Secret), "a string"),
               (list, "an array"), (dict, "a table"), ((_dt.date, _dt.time), "a date/time"))


_EXPECTED = {
    "int": "a non-negative integer",
    "number": "a non-negative number",
    "bool": "a boolean (true or false)",
    "str": "a string",
    "list": "an array of strings",
}


def describe(value: Any, secret: bool = False) -> str:
    """What a value is, for error messages (never shows a secret)."""
    if isinstance(value, Secret) or secret:
        kind = "a string" if isinstance(value, (str, Secret)) else _type_name(value)
        return f"{kind} (value hidden: secret)"
    shown = toml_value(value, mask=True)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{_type_name(value)} {shown}"


def _type_name(value: Any) -> str:
    return _word(value, _TYPE_NAMES) or type(value).__name__


def _check_kind(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == "number":
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0
        )
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":  # a known secret-named setting (dashboard.token) arrives wrapped
        return isinstance(value, (str, Secret))
    if kind == "list":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return True


class Validator:
    """Checks one layer (a file's base, one of its profiles, or the environment overrides).

    ``locate(path)`` returns ``(where, details)`` for the dotted path as written in the source.
    """

    def __init__(self, locate: Any, warnings: list[str]) -> None:
        self.locate = locate
        self.warnings = warnings

    def fail(self, path: Sequence[str], message: str) -> None:
        where, details = self.locate(path)
        raise ConfigError(f"{where}: {message}", details=details)

    def warn(self, path: Sequence[str], message: str) -> None:
        where, _ = self.locate(path)
        self.warnings.append(f"{where}: {message}")

    def layer(self, tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> None:
        """Validate a layer whose top level holds sections."""
        for name, value in tree.items():
            path = prefix + (name,)
            if name in DEFAULTS:
                if not isinstance(value, dict):
                    self.fail(path, f"{name} must be a table ([{name}]), got {describe(value)}")
                self.section(name, value, path)
            else:
                self.warn(path, f"unknown setting {'.'.join(path)!r} (kept, but aikit does not use it)")
                self.secrets(value, path)

    def section(self, name: str, table: dict[str, Any], path: tuple[str, ...]) -> None:
        for key, value in table.items():
            key_path = path + (key,)
            dotted = ".".join(key_path)
            kind = kind_of_default(name, key)
            if kind is not None:
                if not _check_kind(kind, value):
                    self.fail(key_path, f"{dotted} must be {_EXPECTED[kind]}, got {describe(value)}")
            elif name not in OPEN_SECTIONS and not isinstance(DEFAULTS.get(name, {}).get(key), dict):
                self.warn(key_path, f"unknown setting {dotted!r} (kept, but aikit does not use it)")
            self.secrets(value, key_path, key)

    def secrets(self, value: Any, path: tuple[str, ...], key: str | None = None) -> None:
        """Secret-named keys hold strings; ``*_env`` indirections hold variable names."""
        if key is not None:
            dotted = ".".join(path)
            if is_secret_key(key) and not isinstance(value, (Secret, dict)):
                self.fail(path, f"{dotted} must be a string (a secret), got {describe(value, secret=True)}")
            if secret_indirection(key) and not isinstance(value, str):
                self.fail(path, f"{dotted} must be the name of an environment variable, got {describe(value)}")
        if isinstance(value, dict):
            for sub, item in value.items():
                self.secrets(item, path + (sub,), sub)



def env_locator(name: str) -> Any:
    """A :class:`Validator` locator pointing at the environment variable ``name``."""
    return lambda path: (f"environment variable {name}", {"env": name, "key": ".".join(path)})

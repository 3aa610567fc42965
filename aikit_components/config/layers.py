"""Combining layers: merging tables, and the ``AIKIT_<SECTION>__<KEY>`` environment overrides."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from .defaults import ENV_ALIASES
from .paths import ENV_PREFIX
from .secrets import Secret, is_secret_key
from .validation import kind_of_default


def merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    """Merge ``top`` into ``base`` in place: tables key by key, anything else replaces."""
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _parse_env_value(raw: str, kind: str | None, secret: bool) -> Any:
    """An override's value: secrets and string settings verbatim, else a TOML literal or a string."""
    if secret:
        return Secret(raw)
    if kind == "str":
        return raw
    if kind == "bool" and raw.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[raw.strip().lower()]
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        parsed = {}
    if list(parsed) != ["v"]:  # not one TOML literal
        parsed = {}
    if kind == "list" and not isinstance(parsed.get("v"), list):
        return [item.strip() for item in raw.split(",") if item.strip()]
    return parsed.get("v", raw)


def read_env_overrides(env: Mapping[str, str]) -> list[tuple[str, tuple[str, ...], Any]]:
    """``(variable, path, value)`` for every alias in :data:`ENV_ALIASES` that is set, then every
    ``AIKIT_<SECTION>__<KEY>`` variable sorted by name (applied in that order, so they win)."""
    out = []
    for name, path in ENV_ALIASES.items():
        if env.get(name, "").strip():
            out.append((name, path, _parse_env_value(env[name].strip(), kind_of_default(*path), False)))
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):]
        if "__" not in rest:
            continue  # AIKIT_DATA_DIR, AIKIT_PROFILE, ...: settings of their own, not overrides
        parts = rest.split("__")
        if not all(parts):
            raise ConfigError(
                f"environment variable {name}: malformed override name "
                "(expected AIKIT_<SECTION>__<KEY>, levels separated by one double underscore)",
                details={"env": name},
            )
        path = tuple(part.lower() for part in parts)
        kind = kind_of_default(path[0], path[1]) if len(path) == 2 else None
        value = _parse_env_value(env[name], kind, is_secret_key(path[-1]))
        out.append((name, path, value))
    return out


def _resolve_case(table: Mapping[str, Any], key: str) -> str:
    """The existing key of ``table`` equal to ``key`` ignoring case (env names are upper case)."""
    if key in table:
        return key
    for existing in table:
        if existing.lower() == key:
            return existing
    return key


def apply_override(tree: dict[str, Any], name: str, path: tuple[str, ...], value: Any) -> tuple[str, ...]:
    """Set ``path`` in ``tree``; returns the path as stored (keys matched case-insensitively)."""
    node = tree
    stored: list[str] = []
    for depth, part in enumerate(path):
        key = _resolve_case(node, part)
        stored.append(key)
        if depth == len(path) - 1:
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                merge(node[key], value)
            else:
                node[key] = value
        else:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"environment variable {name}: cannot set {'.'.join(path)} because "
                    f"{'.'.join(stored)} is not a table",
                    details={"env": name, "key": ".".join(path)},
                )
            node = child
    return tuple(stored)


def nest(path: Sequence[str], value: Any) -> dict[str, Any]:
    """A one-branch tree holding ``value`` at ``path`` (``("a", "b"), 1`` -> ``{"a": {"b": 1}}``)."""
    out: dict[str, Any] = {}
    node = out
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return out

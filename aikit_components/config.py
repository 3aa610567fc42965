"""aikit configuration: where it keeps its data, and the layered ``aikit.toml`` settings.

Data directory
    ``$AIKIT_DATA_DIR`` when set, else ``$XDG_DATA_HOME/aikit``, else ``~/.local/share/aikit``;
    created on first use (:func:`data_dir`).

Configuration (:class:`Config`), sources in increasing precedence:

1. built-in defaults (:data:`DEFAULTS`);
2. the user config file: ``$AIKIT_CONFIG`` when set, else ``$XDG_CONFIG_HOME/aikit/aikit.toml``,
   else ``~/.config/aikit/aikit.toml``;
3. ``aikit.toml`` in the working directory (the project file);
4. the selected profile: ``[profiles.<name>]`` tables of the user file, then of the project file,
   overlay the base (profile chosen by argument, else ``$AIKIT_PROFILE``);
5. environment overrides ``AIKIT_<SECTION>__<KEY>`` (a double underscore separates levels:
   ``AIKIT_TOOLS__HTTP_TIMEOUT_S=5``, ``AIKIT_PROVIDERS__OPENAI__API_KEY=...``). Values are read as
   TOML literals when they parse (numbers, booleans, arrays), else as strings; string settings and
   secrets are always taken verbatim, array settings also accept ``a,b,c``. Names without ``__``
   (``AIKIT_DATA_DIR``, ``AIKIT_MAX_MEMORY_MB``, ...) are not overrides.

Tables merge key by key; any other value (arrays included) replaces the lower layer's.

Known keys are checked against the type of their default; a wrong type is a :class:`ConfigError`
naming the dotted key, the file and the line (or the environment variable). Unknown keys are kept
and reported in :attr:`Config.warnings`.

Secrets: every key whose name ends with ``api_key``, ``token``, ``secret`` or ``password`` (any
case) holds a :class:`Secret`, whose ``str``/``repr`` is ``****``; only :meth:`Secret.reveal` and
:meth:`Config.secret` give the value. A secret can also be named indirectly: ``api_key_env =
"OPENAI_API_KEY"`` reads ``api_key`` from that environment variable (when ``api_key`` itself is
not set).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hmac
import logging
import math
import os
import re
import threading
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULTS",
    "Config",
    "ConfigError",
    "Secret",
    "data_dir",
    "env_int",
    "is_secret_key",
    "load_config",
    "project_config_path",
    "user_config_path",
]

log = logging.getLogger("aikit.config")

CONFIG_FILE = "aikit.toml"
ENV_PREFIX = "AIKIT_"
MASK = "****"


# --------------------------------------------------------------------------------------------
# Pre-config helpers (used before the full configuration is loaded)
# --------------------------------------------------------------------------------------------


def data_dir() -> Path:
    """The aikit data directory (created if missing)."""
    explicit = os.environ.get("AIKIT_DATA_DIR")
    if explicit:
        path = Path(explicit).expanduser()
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "aikit"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment; a malformed value is an error naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


# --------------------------------------------------------------------------------------------
# Defaults and schema
# --------------------------------------------------------------------------------------------

#: Built-in defaults; the type of each value is the type a configured value must have.
# Programs the process tools may run by default (no shells, no wrappers such as env/xargs that
# would run anything). security.py uses the same list.
DEFAULT_COMMANDS = ("git", "ls", "cat", "echo", "python3", "grep", "wc", "head", "tail", "sort", "uniq", "date",
                    "true", "false", "sleep", "pwd")

DEFAULTS: dict[str, dict[str, Any]] = {
    "kernel": {
        "max_memory_mb": 2048,
    },
    "security": {
        "allowed_paths": [],
        "allowed_hosts": [],
        "allow_private_hosts": False,
        "allowed_commands": list(DEFAULT_COMMANDS),
        "env_allowlist": ["HOME", "USER", "LANG", "LC_ALL", "TZ", "PWD", "SHELL", "TERM"],
        "max_tool_calls": 1000,
        "max_wall_time_s": 3600,
    },
    "state": {
        "backend": "sqlite",
    },
    "artifacts": {
        "max_bytes": 104857600,
    },
    "tools": {
        "http_timeout_s": 30,
        "http_retries": 2,
        "http_backoff_s": 0.5,
        "http_max_retry_after_s": 30,
        "http_max_bytes": 10 * 1024 * 1024,
        "fetch_max_chars": 20_000,
        "max_input_bytes": 20 * 1024 * 1024,
        "process_timeout_s": 60,
        "process_output_cap_bytes": 1048576,
        "process_inherit_env": False,
        "sql_timeout_s": 30,
        "sql_busy_timeout_s": 5,
        "git_timeout_s": 60,
        "git_run_hooks": False,
    },
    "providers": {},
    "rag": {
        "embedder": "local",  # or "<provider>/<model>" (an OpenAI-compatible or Ollama embedding endpoint)
        "embedding_cache": True,
        "chunker": "auto",
        "chunk_size": 800,
        "chunk_overlap": 100,
        "chunk_unit": "chars",
        "M": 16,
        "ef_construction": 200,
        "ef_search": 64,
        "exact_threshold": 5000,
    },
}

#: Sections whose keys are free-form (one sub-table per provider): no unknown-key warnings.
OPEN_SECTIONS = frozenset({"providers", "models"})

#: Durations: integer defaults that also accept a float (``http_timeout_s = 2.5``).
NUMBER_KEYS = frozenset({
    "security.max_wall_time_s", "tools.http_timeout_s", "tools.process_timeout_s", "tools.http_backoff_s",
    "tools.http_max_retry_after_s", "tools.sql_timeout_s", "tools.sql_busy_timeout_s", "tools.git_timeout_s",
})

SECRET_SUFFIXES = ("api_key", "token", "secret", "password")


def is_secret_key(name: str) -> bool:
    """True when a key named ``name`` holds a secret (ends with api_key/token/secret/password)."""
    return name.lower().replace("-", "_").endswith(SECRET_SUFFIXES)


def _secret_indirection(name: str) -> str | None:
    """For ``api_key_env`` return ``api_key`` (the secret it names); else None."""
    lower = name.lower()
    if lower.endswith("_env") and is_secret_key(name[:-4]):
        return name[:-4]
    return None


# --------------------------------------------------------------------------------------------
# Secret
# --------------------------------------------------------------------------------------------


class Secret:
    """A secret string that never shows itself: ``str``, ``repr`` and ``format`` give ``****``.

    Use :meth:`reveal` at the one place the value is needed (an HTTP header, say). Secrets refuse
    to be pickled, and ``json.dumps`` rejects them, so they do not leak into stores or logs.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("a Secret holds a string")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The secret value itself."""
        return self._value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> "Secret":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "Secret":
        return self

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled (call reveal() where the value is needed)")


# --------------------------------------------------------------------------------------------
# Where the files are
# --------------------------------------------------------------------------------------------


def user_config_path(env: Mapping[str, str] | None = None, user_dir: Path | None = None) -> Path:
    """The user-level config file: ``user_dir/aikit.toml`` when given, else ``$AIKIT_CONFIG``,
    else ``$XDG_CONFIG_HOME/aikit/aikit.toml``, else ``~/.config/aikit/aikit.toml``."""
    env = os.environ if env is None else env
    if user_dir is not None:
        return Path(user_dir).expanduser() / CONFIG_FILE
    explicit = env.get("AIKIT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME")
    if base:
        return Path(base).expanduser() / "aikit" / CONFIG_FILE
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".config" / "aikit" / CONFIG_FILE


def project_config_path(cwd: Path | None = None) -> Path:
    """The project config file: ``aikit.toml`` in ``cwd`` (default: the working directory)."""
    return Path(cwd if cwd is not None else Path.cwd()) / CONFIG_FILE


# --------------------------------------------------------------------------------------------
# Reading one file
# --------------------------------------------------------------------------------------------

_LINE_COL = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HEADER = re.compile(r"^\[\[?(?P<key>[^\[\]]+?)\]\]?\s*(?:#.*)?$")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_ASSIGN = re.compile(rf"^(?P<key>{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _key_path(text: str) -> tuple[str, ...] | None:
    """The keys of a dotted TOML key (``a."b.c".d`` -> ``("a", "b.c", "d")``), parsed by tomllib."""
    try:
        node: Any = tomllib.loads(f"{text} = 0")
    except tomllib.TOMLDecodeError:
        return None
    parts: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        (key, node), = node.items()
        parts.append(key)
    return tuple(parts)


class _SourceFile:
    """One parsed config file. Its repr names only the path: the text may hold secrets."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the {label} config file {path}: {exc.strerror or exc}",
                details={"file": str(path)},
            ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{path}, line {line}: the config file is not valid UTF-8",
                details={"file": str(path), "line": line},
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            match = _LINE_COL.search(msg)
            details: dict[str, Any] = {"file": str(path)}
            where = str(path)
            if match:
                msg = msg[: match.start()]
                details["line"], details["column"] = int(match.group(1)), int(match.group(2))
                where = f"{path}, line {details['line']}, column {details['column']}"
            raise ConfigError(f"{where}: invalid TOML: {msg}", details=details) from None
        self._lines = text.splitlines()
        self.data: dict[str, Any] = _wrap_secrets(data)

    def __repr__(self) -> str:
        return f"<config file {self.path}>"

    def line_of(self, path: Sequence[str]) -> int | None:
        """The line assigning the dotted key ``path`` (or the closest enclosing one), 1-based."""
        target = tuple(path)
        table: tuple[str, ...] = ()
        best, best_len = None, -1
        for number, line in enumerate(self._lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            header = _HEADER.match(stripped)
            if header:
                parts = _key_path(header.group("key").strip())
                if parts is None:
                    continue
                table = parts
                candidate = parts
            else:
                assign = _ASSIGN.match(stripped)
                if not assign:
                    continue
                parts = _key_path(assign.group("key"))
                if parts is None:
                    continue
                candidate = table + parts
            if candidate == target:
                return number
            if len(candidate) < len(target) and target[: len(candidate)] == candidate and len(candidate) > best_len:
                best, best_len = number, len(candidate)
        return best

    def where(self, path: Sequence[str]) -> str:
        line = self.line_of(path)
        return f"{self.path}, line {line}" if line else str(self.path)

    def details(self, path: Sequence[str]) -> dict[str, Any]:
        line = self.line_of(path)
        out: dict[str, Any] = {"file": str(self.path), "key": ".".join(path)}
        if line:
            out["line"] = line
        return out


def _wrap_secrets(node: Any) -> Any:
    """Wrap every string under a secret-named key in :class:`Secret` (in place; returns node)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and is_secret_key(key):
                node[key] = Secret(value)
            else:
                _wrap_secrets(value)
    elif isinstance(node, list):
        for item in node:
            _wrap_secrets(item)
    return node


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _kind_of_default(section: str, key: str) -> str | None:
    """The expected kind of a known key: "int", "number", "bool", "str", "list", or None."""
    if section not in DEFAULTS or key not in DEFAULTS[section]:
        return None
    if f"{section}.{key}" in NUMBER_KEYS:
        return "number"
    default = DEFAULTS[section][key]
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "str"
    if isinstance(default, list):
        return "list"
    return None


_EXPECTED = {
    "int": "a non-negative integer",
    "number": "a non-negative number",
    "bool": "a boolean (true or false)",
    "str": "a string",
    "list": "an array of strings",
}


def _describe(value: Any, secret: bool = False) -> str:
    """What a value is, for error messages (never shows a secret)."""
    if isinstance(value, Secret) or secret:
        kind = "a string" if isinstance(value, (str, Secret)) else _type_name(value)
        return f"{kind} (value hidden: secret)"
    shown = _toml_value(value, mask=True)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{_type_name(value)} {shown}"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, (str, Secret)):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (_dt.date, _dt.time)):
        return "a date/time"
    return type(value).__name__


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
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return True


class _Validator:
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
                    self.fail(path, f"{name} must be a table ([{name}]), got {_describe(value)}")
                self.section(name, value, path)
            else:
                self.warn(path, f"unknown setting {'.'.join(path)!r} (kept, but aikit does not use it)")
                self.secrets(value, path)

    def section(self, name: str, table: dict[str, Any], path: tuple[str, ...]) -> None:
        for key, value in table.items():
            key_path = path + (key,)
            dotted = ".".join(key_path)
            kind = _kind_of_default(name, key)
            if kind is not None:
                if not _check_kind(kind, value):
                    self.fail(key_path, f"{dotted} must be {_EXPECTED[kind]}, got {_describe(value)}")
            elif name not in OPEN_SECTIONS:
                self.warn(key_path, f"unknown setting {dotted!r} (kept, but aikit does not use it)")
            self.secrets(value, key_path, key)

    def secrets(self, value: Any, path: tuple[str, ...], key: str | None = None) -> None:
        """Secret-named keys hold strings; ``*_env`` indirections hold variable names."""
        if key is not None:
            dotted = ".".join(path)
            if is_secret_key(key) and not isinstance(value, (Secret, dict)):
                self.fail(path, f"{dotted} must be a string (a secret), got {_describe(value, secret=True)}")
            if _secret_indirection(key) and not isinstance(value, str):
                self.fail(path, f"{dotted} must be the name of an environment variable, got {_describe(value)}")
        if isinstance(value, dict):
            for sub, item in value.items():
                self.secrets(item, path + (sub,), sub)


# --------------------------------------------------------------------------------------------
# Merging and environment overrides
# --------------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    """Merge ``top`` into ``base`` in place: tables key by key, anything else replaces."""
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
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


def _env_overrides(env: Mapping[str, str]) -> list[tuple[str, tuple[str, ...], Any]]:
    """``(variable, path, value)`` for every ``AIKIT_<SECTION>__<KEY>`` variable, sorted by name."""
    out = []
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
        kind = _kind_of_default(path[0], path[1]) if len(path) == 2 else None
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


def _apply_override(tree: dict[str, Any], name: str, path: tuple[str, ...], value: Any) -> tuple[str, ...]:
    """Set ``path`` in ``tree``; returns the path as stored (keys matched case-insensitively)."""
    node = tree
    stored: list[str] = []
    for depth, part in enumerate(path):
        key = _resolve_case(node, part)
        stored.append(key)
        if depth == len(path) - 1:
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                _merge(node[key], value)
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


def _nest(path: Sequence[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return out


def _resolve_indirections(node: dict[str, Any], env: Mapping[str, str], path: tuple[str, ...], warnings: list[str]) -> None:
    """``api_key_env = "VAR"`` -> ``api_key = Secret($VAR)`` when ``api_key`` is not set."""
    for key, value in list(node.items()):
        if isinstance(value, dict):
            _resolve_indirections(value, env, path + (key,), warnings)
            continue
        target = _secret_indirection(key)
        if target is None or not isinstance(value, str):
            continue
        if node.get(target) is not None:
            continue
        if value in env:
            node[target] = Secret(env[value])
        else:
            warnings.append(
                f"{'.'.join(path + (key,))}: environment variable {value} is not set, "
                f"so {'.'.join(path + (target,))} has no value"
            )


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


class Config(Mapping[str, Any]):
    """The effective configuration: a read-only mapping of section name -> table.

    Build it with :meth:`load`. Reads return copies, so callers cannot change it by accident.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        sources: Sequence[str] = (),
        profile: str | None = None,
        profiles: Sequence[str] = (),
        warnings: Sequence[str] = (),
        env_overrides: Sequence[str] = (),
    ) -> None:
        tree = copy.deepcopy(DEFAULTS)
        if data:
            _merge(tree, _wrap_secrets(copy.deepcopy(dict(data))))
        self._data: dict[str, Any] = tree
        #: The config files that contributed, lowest precedence first.
        self.sources: list[str] = list(sources)
        #: The selected profile, or None.
        self.profile = profile
        #: Every profile defined in the files, sorted.
        self.profiles: list[str] = list(profiles)
        #: Non-fatal problems (unknown keys, unset ``*_env`` variables), each naming its source.
        self.warnings: list[str] = list(warnings)
        #: The ``AIKIT_<SECTION>__<KEY>`` variables that were applied.
        self.env_overrides: list[str] = list(env_overrides)

    # ---- loading ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        cwd: Path | None = None,
        profile: str | None = None,
        env: Mapping[str, str] | None = None,
        user_dir: Path | None = None,
    ) -> "Config":
        """Load defaults, the user file, the project file, the profile and the environment.

        ``cwd`` is where ``aikit.toml`` is looked for (default: the working directory); ``env``
        replaces ``os.environ`` for every lookup; ``user_dir`` replaces the user config directory.
        Raises :class:`ConfigError` naming the key and the file line on a bad config.
        """
        env = os.environ if env is None else env
        warnings: list[str] = []

        files: list[_SourceFile] = []
        user_path = user_config_path(env, user_dir)
        if user_dir is None and env.get("AIKIT_CONFIG") and not user_path.is_file():
            raise ConfigError(
                f"AIKIT_CONFIG points at {user_path}, which is not a file",
                details={"env": "AIKIT_CONFIG", "file": str(user_path)},
            )
        project_path = project_config_path(cwd)
        seen: set[Path] = set()
        for path, label in ((user_path, "user"), (project_path, "project")):
            if not path.is_file():
                continue
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            files.append(_SourceFile(path, label))

        # Validate every layer where it is written, so errors name the file and the line.
        available: dict[str, list[_SourceFile]] = {}
        for source in files:
            base = {k: v for k, v in source.data.items() if k != "profiles"}
            _Validator(_file_locator(source), warnings).layer(base)
            profiles = source.data.get("profiles", {})
            if not isinstance(profiles, dict):
                where = source.where(("profiles",))
                raise ConfigError(
                    f"{where}: profiles must be a table of [profiles.<name>] tables, got {_describe(profiles)}",
                    details=source.details(("profiles",)),
                )
            for name, table in profiles.items():
                path = ("profiles", name)
                if not isinstance(table, dict):
                    raise ConfigError(
                        f"{source.where(path)}: profiles.{name} must be a table ([profiles.{name}]), "
                        f"got {_describe(table)}",
                        details=source.details(path),
                    )
                _Validator(_file_locator(source), warnings).layer(table, path)
                available.setdefault(name, []).append(source)

        selected = profile if profile is not None else (env.get("AIKIT_PROFILE") or None)
        if selected is not None and selected not in available:
            looked = ", ".join(str(f.path) for f in files) or f"{user_path}, {project_path} (neither exists)"
            names = ", ".join(sorted(available)) or "none are defined"
            origin = "" if profile is not None else " (from AIKIT_PROFILE)"
            raise ConfigError(
                f"unknown profile {selected!r}{origin}; available profiles: {names} (looked in {looked})",
                details={"profile": selected, "available": sorted(available)},
            )

        tree = copy.deepcopy(DEFAULTS)
        for source in files:
            _merge(tree, {k: v for k, v in source.data.items() if k != "profiles"})
        if selected is not None:
            for source in files:
                if selected in source.data.get("profiles", {}):
                    _merge(tree, source.data["profiles"][selected])

        applied: list[str] = []
        for name, path, value in _env_overrides(env):
            stored = _apply_override(tree, name, path, value)
            _Validator(_env_locator(name), warnings).layer(_nest(stored, value))
            applied.append(name)

        _resolve_indirections(tree, env, (), warnings)

        config = cls.__new__(cls)
        config._data = tree
        config.sources = [str(f.path) for f in files]
        config.profile = selected
        config.profiles = sorted(available)
        config.warnings = warnings
        config.env_overrides = applied
        log.debug(
            "config loaded: sources=%s profile=%s overrides=%s", config.sources, selected, applied
        )
        for warning in warnings:
            log.debug("config warning: %s", warning)
        return config

    # ---- reading ----------------------------------------------------------------------------

    def get(self, dotted: str | Sequence[str], default: Any = None) -> Any:  # type: ignore[override]
        """The value at ``"section.key"`` (or a sequence of keys); secrets come back as
        :class:`Secret`, tables as copies; ``default`` when absent."""
        parts = dotted.split(".") if isinstance(dotted, str) else list(dotted)
        node: Any = self._data
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def secret(self, dotted: str | Sequence[str]) -> str | None:
        """The revealed value of a secret (None when not configured)."""
        value = self.get(dotted)
        if value is None:
            return None
        if isinstance(value, Secret):
            return value.reveal()
        return str(value)

    def section(self, name: str) -> dict[str, Any]:
        """A copy of one section (``{}`` when it does not exist)."""
        value = self._data.get(name)
        return copy.deepcopy(value) if isinstance(value, dict) else {}

    def __getitem__(self, name: str) -> Any:
        return copy.deepcopy(self._data[name])

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Config(profile={self.profile!r}, sources={self.sources!r}, data={self.to_dict(mask=True)!r})"

    # ---- output -----------------------------------------------------------------------------

    def to_dict(self, mask: bool = True) -> dict[str, Any]:
        """A plain nested dict; secrets as ``"****"`` (``mask=False``: their values)."""
        return _unwrap(self._data, mask)

    def to_toml(self, mask: bool = True) -> str:
        """The configuration as TOML text; secrets as ``"****"`` unless ``mask=False``."""
        return _dump_toml(self._data, mask)


def _file_locator(source: _SourceFile) -> Any:
    return lambda path: (source.where(path), source.details(path))


def _env_locator(name: str) -> Any:
    return lambda path: (f"environment variable {name}", {"env": name, "key": ".".join(path)})


def _unwrap(node: Any, mask: bool) -> Any:
    if isinstance(node, Secret):
        return MASK if mask else node.reveal()
    if isinstance(node, dict):
        return {k: _unwrap(v, mask) for k, v in node.items()}
    if isinstance(node, list):
        return [_unwrap(v, mask) for v in node]
    return node


# --------------------------------------------------------------------------------------------
# TOML output
# --------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_value(value: Any, mask: bool) -> str:
    if isinstance(value, Secret):
        return _toml_string(MASK if mask else value.reveal())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item, mask) for item in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v, mask)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"cannot write a {type(value).__name__} as TOML")


def _dump_toml(data: Mapping[str, Any], mask: bool) -> str:
    lines: list[str] = []

    def table(path: tuple[str, ...], node: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in node.items() if not isinstance(v, Mapping)]
        subtables = [(k, v) for k, v in node.items() if isinstance(v, Mapping)]
        if path and (scalars or not subtables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for key, value in scalars:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, mask)}")
        for key, value in subtables:
            table(path + (key,), value)

    table((), data)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Process-wide cached config
# --------------------------------------------------------------------------------------------

_cache: dict[tuple[str, str | None], Config] = {}
_cache_lock = threading.Lock()


def load_config(profile: str | None = None, *, reload: bool = False) -> Config:
    """The configuration for the working directory and ``os.environ``, loaded once and cached
    (per working directory and profile). ``reload=True`` reads the files and environment again."""
    key = (str(Path.cwd()), profile if profile is not None else os.environ.get("AIKIT_PROFILE") or None)
    with _cache_lock:
        if reload or key not in _cache:
            _cache[key] = Config.load(profile=profile)
        return _cache[key]

"""Which settings grant rights, and which project files the user has trusted to grant them.

A script can usually write into its working directory, which is where the project ``aikit.toml``
is read from. Settings that widen what code may do (the security policy, resource limits, programs
to start, environment variables to read) are therefore taken from a project file only when the
user has trusted that exact version of it: ``aikit config trust`` records the file's SHA-256 in
the user config directory, and any later edit (by a script or by hand) makes it untrusted again,
as direnv does with ``.envrc``. The user config file, the environment and the command line are
the user's own and always count.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError

TRUST_FILE = "trusted-projects.json"
#: Set to 1 by the user (never by a script: it cannot change its parent's environment) to trust
#: every project file, as CI jobs that check out their own repository may want.
TRUST_ALL_ENV = "AIKIT_TRUST_PROJECT_CONFIG"

# (section, key) pairs that grant rights; key None: every key of the section.
_RIGHTS: tuple[tuple[str, str | None], ...] = (
    ("security", None),
    ("mcp", None),  # servers aikit starts or connects to
    ("kernel", "max_memory_mb"),
    ("kernel", "max_message_mb"),
    ("tools", "process_inherit_env"),
    ("tools", "git_run_hooks"),
    ("dashboard", "host"),
)


def grants_rights(path: tuple[str, ...]) -> bool:
    """Whether the setting at ``path`` (``("security", "allowed_commands")``) widens what code may do."""
    if not path:
        return False
    return any(path[0] == section and (key is None or (len(path) > 1 and path[1] == key)) for section, key in _RIGHTS)


# Limits where 0 means "no limit" (so 0 widens, and any limit narrows 0).
_ZERO_IS_UNLIMITED = frozenset({"kernel.max_memory_mb"})


def narrows(new: Any, old: Any, dotted: str = "") -> bool:
    """Whether ``new`` allows no more than ``old`` does at the setting ``dotted``: a subset of a
    list, ``false`` for a switch, a lower limit, or the same value."""
    if new == old:
        return True
    if isinstance(new, list) and isinstance(old, list):
        return all(item in old for item in new)
    if isinstance(new, bool) or isinstance(old, bool):
        return new is False
    if isinstance(new, (int, float)) and isinstance(old, (int, float)):
        if dotted in _ZERO_IS_UNLIMITED:
            return old == 0 and new > 0 or 0 < new <= old
        return new <= old
    return False


def strip_rights(table: Mapping[str, Any], reference: Mapping[str, Any] | None = None,
                 prefix: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """``table`` without the settings that grant rights beyond ``reference`` (the settings from
    trusted layers: a setting that only narrows them stays), and the dotted names removed."""
    reference = reference or {}
    kept: dict[str, Any] = {}
    removed: list[str] = []
    for key, value in table.items():
        path = (*prefix, key)
        base = reference.get(key) if isinstance(reference, Mapping) else None
        if isinstance(value, dict):
            inner_table, inner = strip_rights(value, base if isinstance(base, dict) else {}, path)
            if inner_table or not inner:
                kept[key] = inner_table
            removed += inner
        elif grants_rights(path) and not (base is not None and narrows(value, base, ".".join(path))):
            removed.append(".".join(path))
        else:
            kept[key] = value
    return kept, removed


def fingerprint(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TrustStore:
    """The project files the user trusts, by absolute path and content hash (a JSON file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the list of trusted project files {self.path}: {exc}; "
                              "remove it and trust the projects again (aikit config trust)") from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".trusted-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(entries, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, self.path)

    def is_trusted(self, file: Path) -> bool:
        """Whether this version of ``file`` (its current content) was trusted."""
        expected = self._read().get(str(file.resolve()))
        return expected is not None and expected == fingerprint(file)

    def trust(self, file: Path) -> str:
        """Trust the current content of ``file``; returns its fingerprint."""
        digest = fingerprint(file)
        entries = self._read()
        entries[str(file.resolve())] = digest
        self._write(entries)
        return digest

    def forget(self, file: Path) -> bool:
        """Stop trusting ``file``; whether it was listed."""
        entries = self._read()
        found = entries.pop(str(file.resolve()), None) is not None
        if found:
            self._write(entries)
        return found

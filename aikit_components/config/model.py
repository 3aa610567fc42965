"""The :class:`Config` object: loading the layers in order, reading settings, and output."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .defaults import DEFAULTS
from .layers import apply_override, merge, nest, read_env_overrides
from .paths import project_config_path, user_config_path
from .secrets import Secret, resolve_indirections, unwrap_secrets, wrap_secrets
from .source import SourceFile, file_locator
from .toml_out import dump_toml
from .validation import Validator, describe, env_locator

log = logging.getLogger("aikit.config")

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
            merge(tree, wrap_secrets(copy.deepcopy(dict(data))))
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
    ) -> Config:
        """Load defaults, the user file, the project file, the profile and the environment.

        ``cwd`` is where ``aikit.toml`` is looked for (default: the working directory); ``env``
        replaces ``os.environ`` for every lookup; ``user_dir`` replaces the user config directory.
        Raises :class:`ConfigError` naming the key and the file line on a bad config.
        """
        env = os.environ if env is None else env
        warnings: list[str] = []

        files: list[SourceFile] = []
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
            files.append(SourceFile(path, label))

        # Validate every layer where it is written, so errors name the file and the line.
        available: dict[str, list[SourceFile]] = {}
        for source in files:
            base = {k: v for k, v in source.data.items() if k != "profiles"}
            Validator(file_locator(source), warnings).layer(base)
            profiles = source.data.get("profiles", {})
            if not isinstance(profiles, dict):
                where = source.where(("profiles",))
                raise ConfigError(
                    f"{where}: profiles must be a table of [profiles.<name>] tables, got {describe(profiles)}",
                    details=source.details(("profiles",)),
                )
            for name, table in profiles.items():
                path = ("profiles", name)
                if not isinstance(table, dict):
                    raise ConfigError(
                        f"{source.where(path)}: profiles.{name} must be a table ([profiles.{name}]), "
                        f"got {describe(table)}",
                        details=source.details(path),
                    )
                Validator(file_locator(source), warnings).layer(table, path)
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
            merge(tree, {k: v for k, v in source.data.items() if k != "profiles"})
        if selected is not None:
            for source in files:
                if selected in source.data.get("profiles", {}):
                    merge(tree, source.data["profiles"][selected])

        applied: list[str] = []
        for name, path, value in read_env_overrides(env):
            stored = apply_override(tree, name, path, value)
            Validator(env_locator(name), warnings).layer(nest(stored, value))
            applied.append(name)

        resolve_indirections(tree, env, (), warnings)

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
        return unwrap_secrets(self._data, mask)

    def to_toml(self, mask: bool = True) -> str:
        """The configuration as TOML text; secrets as ``"****"`` unless ``mask=False``."""
        return dump_toml(self._data, mask)

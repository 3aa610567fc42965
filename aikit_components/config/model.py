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
from .trust import TRUST_ALL_ENV, TRUST_FILE, TrustStore, strip_rights
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
        #: Settings of an untrusted project file that were ignored because they grant rights.
        self.ignored: list[str] = []
        #: Warnings every front door shows the user at start (a subset of :attr:`warnings`).
        self.notices: list[str] = []
        #: Dotted key -> the layer that set it ("default", "user file P", "project file P", ...).
        self.origins: dict[str, str] = {}

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

        # A project file grants rights only in the version the user trusted (config/trust.py).
        ignored: list[str] = []
        notices: list[str] = []
        trust_all = env.get(TRUST_ALL_ENV, "").strip() in ("1", "true", "yes")
        store = TrustStore(user_path.parent / TRUST_FILE)
        for source in files:
            if source.label != "project" or trust_all or store.is_trusted(source.path):
                continue
            trusted = copy.deepcopy(DEFAULTS)  # what the defaults and the user's own file allow
            for other in files:
                if other.label == "user":
                    merge(trusted, {k: v for k, v in other.data.items() if k != "profiles"})
            base, removed = strip_rights({k: v for k, v in source.data.items() if k != "profiles"}, trusted)
            profiles = source.data.get("profiles")
            if isinstance(profiles, dict):
                kept_profiles = {}
                for name, table in profiles.items():
                    kept_profiles[name], gone = strip_rights(table, trusted) if isinstance(table, dict) else (table, [])
                    removed += [f"profiles.{name}.{key}" for key in gone]
                base["profiles"] = kept_profiles
            source.data = base
            ignored += removed
            if removed:
                shown = ", ".join(removed[:6]) + (f" and {len(removed) - 6} more" if len(removed) > 6 else "")
                notices.append(
                    f"{source.path} sets {shown}: ignored, because settings that grant rights are taken from a "
                    f"project file only once you trust it (a script may have written it); check the file, then "
                    f"run `aikit config trust` in {source.path.parent} (again after every change)")
                warnings.append(notices[-1])
                source.label = "project (untrusted)"

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
        origins: dict[str, str] = {}
        _record_origins(origins, DEFAULTS, "default")
        for source in files:
            layer = {k: v for k, v in source.data.items() if k != "profiles"}
            merge(tree, layer)
            _record_origins(origins, layer, f"{source.label} file {source.path}")
        if selected is not None:
            for source in files:
                if selected in source.data.get("profiles", {}):
                    merge(tree, source.data["profiles"][selected])
                    _record_origins(origins, source.data["profiles"][selected],
                                    f"profile {selected} in {source.path}")

        applied: list[str] = []
        for name, path, value in read_env_overrides(env):
            stored = apply_override(tree, name, path, value)
            Validator(env_locator(name), warnings).layer(nest(stored, value))
            _record_origins(origins, nest(stored, value), f"environment {name}")
            applied.append(name)

        resolve_indirections(tree, env, (), warnings)

        config = cls.__new__(cls)
        config._data = tree
        config.sources = [str(f.path) for f in files]
        config.profile = selected
        config.profiles = sorted(available)
        config.warnings = warnings
        config.env_overrides = applied
        config.ignored = ignored
        config.notices = notices
        config.origins = origins
        log.debug(
            "config loaded: sources=%s profile=%s overrides=%s", config.sources, selected, applied
        )
        for warning in warnings:
            log.debug("config warning: %s", warning)
        return config

    # ---- reading ----------------------------------------------------------------------------

    def origin(self, dotted: str) -> str:
        """Which layer set the setting ``"section.key"`` (the nearest enclosing one for a table
        key without a leaf of its own): ``"default"``, ``"user file PATH"``, ``"project file
        PATH"``, ``"profile NAME in PATH"`` or ``"environment VAR"``."""
        parts = dotted.split(".")
        while parts:
            found = self.origins.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return "default"

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


def _record_origins(origins: dict[str, str], layer: Mapping[str, Any], label: str,
                    prefix: tuple[str, ...] = ()) -> None:
    """Note ``label`` as the origin of every leaf setting in ``layer`` (a table replaces none)."""
    for key, value in layer.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            _record_origins(origins, value, label, path)
        else:
            origins[".".join(path)] = label

"""Where aikit keeps things, needed before the configuration is loaded: the data directory,
integer settings from the environment, and the locations of the user and project config files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CONFIG_FILE = "aikit.toml"
ENV_PREFIX = "AIKIT_"


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

"""Where aikit keeps its data, and the few settings the kernel needs before full config lands.

The data directory is ``$AIKIT_DATA_DIR`` when set, else ``$XDG_DATA_HOME/aikit``, else
``~/.local/share/aikit``. It is created on first use.
"""

from __future__ import annotations

import os
from pathlib import Path


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

"""Running the `aikit` command from tests: the executable next to this Python, and an environment
of its own (no AIKIT_* settings from outside, a private data directory and user config)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

AIKIT = str(Path(sys.executable).with_name("aikit"))


def aikit_env(tmp_path: Path) -> dict[str, str]:
    """The environment for an `aikit` command in a test: this one without AIKIT_* settings, data in
    ``tmp_path/data``, user config in ``tmp_path/config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    return dict(env, AIKIT_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))

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
   (``AIKIT_DATA_DIR``, ``AIKIT_PROFILE``, ...) are not overrides, except the older names kept as
   aliases of a setting (:data:`ENV_ALIASES`: ``AIKIT_MAX_MEMORY_MB`` is ``kernel.max_memory_mb``,
   ...), which an ``AIKIT_KERNEL__...`` override of the same setting beats.

Tables merge key by key; any other value (arrays included) replaces the lower layer's.

Known keys are checked against the type of their default; a wrong type is a :class:`~aikit_components.errors.ConfigError`
naming the dotted key, the file and the line (or the environment variable). Unknown keys are kept
and reported in :attr:`Config.warnings`.

Secrets: every key whose name ends with ``api_key``, ``token``, ``secret`` or ``password`` (any
case) holds a :class:`Secret`, whose ``str``/``repr`` is ``****``; only :meth:`Secret.reveal` and
:meth:`Config.secret` give the value. A secret can also be named indirectly: ``api_key_env =
"OPENAI_API_KEY"`` reads ``api_key`` from that environment variable (when ``api_key`` itself is
not set).

Modules: ``paths`` (data directory, file locations), ``defaults``, ``secrets`` (Secret,
masking), ``source`` (reading one file), ``validation``, ``layers`` (merging, environment
overrides), ``model`` (:class:`Config`), ``toml_out`` (TOML text).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .defaults import DEFAULT_COMMANDS, DEFAULTS, ENV_ALIASES
from .model import Config
from .paths import (
    CONFIG_FILE,
    ENV_PREFIX,
    data_dir,
    env_int,
    project_config_path,
    user_config_path,
)
from .secrets import MASK, Secret, is_secret_key

__all__ = [
    "CONFIG_FILE",
    "DEFAULTS",
    "DEFAULT_COMMANDS",
    "ENV_ALIASES",
    "ENV_PREFIX",
    "MASK",
    "Config",
    "Secret",
    "data_dir",
    "env_int",
    "is_secret_key",
    "load_config",
    "project_config_path",
    "user_config_path",
]


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

"""The kernel's settings, read in one place: the ``[kernel]`` section of :class:`Config`.

Every knob of the kernel process (memory available to Lua, largest Jupyter message, log level,
DAP port, session to resume) is a key of ``[kernel]`` in ``aikit.toml``, overridable with
``AIKIT_KERNEL__<KEY>`` like every setting. The older variables ``AIKIT_MAX_MEMORY_MB``,
``AIKIT_MAX_MESSAGE_MB``, ``AIKIT_LOG_LEVEL``, ``AIKIT_DAP_PORT`` and ``AIKIT_SESSION`` still work
(aliases, see ``aikit_components.config.ENV_ALIASES``). Nothing else in ``aikit_kernel`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from aikit_components.config import DEFAULTS, Config, load_config
from aikit_components.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DEFAULT: dict[str, Any] = DEFAULTS["kernel"]
_MB = 1024 * 1024


@dataclass(frozen=True)
class KernelSettings:
    """The ``[kernel]`` settings, checked. Build with :meth:`from_config` (tests may build one
    directly: ``KernelSettings(max_memory_mb=64)``)."""

    max_memory_mb: int = _DEFAULT["max_memory_mb"]
    max_message_mb: int = _DEFAULT["max_message_mb"]
    log_level: str = _DEFAULT["log_level"]
    dap_port: int | None = None  # None: no DAP server (``dap_port = 0`` in the config)
    resume_session: str | None = None  # None: start a new session

    @classmethod
    def from_config(cls, config: Config) -> KernelSettings:
        """The settings of ``config``'s ``[kernel]`` section (types were checked when it loaded;
        this checks ranges and choices). Raises :class:`ConfigError` naming the key."""
        section = config.section("kernel")
        level = str(section.get("log_level", _DEFAULT["log_level"])).strip().upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"kernel.log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}",
                              details={"key": "kernel.log_level"})
        message_mb = int(section.get("max_message_mb", _DEFAULT["max_message_mb"]))
        if message_mb < 1:
            raise ConfigError("kernel.max_message_mb must be at least 1", details={"key": "kernel.max_message_mb"})
        port = int(section.get("dap_port", 0))
        if port > 65535:
            raise ConfigError(f"kernel.dap_port must be a TCP port (1-65535, or 0 for none), got {port}",
                              details={"key": "kernel.dap_port"})
        session = str(section.get("resume_session", "") or "").strip()
        return cls(
            max_memory_mb=int(section.get("max_memory_mb", _DEFAULT["max_memory_mb"])),
            max_message_mb=message_mb,
            log_level=level,
            dap_port=port or None,
            resume_session=session or None,
        )

    @property
    def max_memory_bytes(self) -> int | None:
        """The Lua memory limit in bytes (None: no limit)."""
        return self.max_memory_mb * _MB if self.max_memory_mb > 0 else None

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * _MB


class LoadedSettings(NamedTuple):
    """The outcome of :func:`load_settings`: the config (None when it could not be loaded), the
    kernel settings (defaults then), and the error to show the user (None when all went well)."""

    config: Config | None
    settings: KernelSettings
    error: str | None


def load_settings(config: Config | None = None) -> LoadedSettings:
    """Load the configuration (unless given) and the kernel settings from it. A broken config
    must not keep a kernel from starting: the error comes back, with default settings (and the
    config, when only a ``[kernel]`` value was wrong)."""
    try:
        config = config if config is not None else load_config()
    except ConfigError as exc:
        return LoadedSettings(None, KernelSettings(), exc.message)
    try:
        return LoadedSettings(config, KernelSettings.from_config(config), None)
    except ConfigError as exc:
        return LoadedSettings(config, KernelSettings(), exc.message)

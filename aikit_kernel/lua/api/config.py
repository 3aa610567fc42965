"""``Config``: read the effective configuration from Lua (secrets stay out of reach)."""

from __future__ import annotations

from typing import Any

from aikit_components.components import Components
from aikit_components.config import Secret, is_secret_key
from aikit_components.errors import PermissionDenied

from ..engine import LuaEngine
from . import expose
from ._util import lua, name_arg

DOCS = {
    "": "Config\n\nThe effective configuration (aikit.toml in the working directory, then the user config directory, a "
        "profile, AIKIT_SECTION__KEY environment overrides). Secrets (API keys) are never readable from scripts.",
    "get": "Config.get(key [, default]) -> value\n\nA setting by dotted key; secrets raise permission_denied.\n"
           "Example: Config.get('tools.http_timeout_s')",
    "show": "Config.show() -> table\n\nThe whole effective config with secrets masked as '****'.",
    "profile": "Config.profile() -> name | nil\n\nThe active profile.",
    "sources": "Config.sources() -> {path, ...}\n\nThe files the config was read from.",
}


def install(engine: LuaEngine, components: Components) -> None:
    config = components.config

    def get(key: Any, default: Any = None) -> Any:
        dotted = name_arg(key, "Config.get: the key")
        value = config.get(dotted, None)
        if isinstance(value, Secret) or is_secret_key(dotted.rsplit(".", 1)[-1]):
            raise PermissionDenied(f"{dotted} is a secret: scripts cannot read secrets (providers use them directly)",
                                   details={"rule": "secrets", "key": dotted})
        if value is None:
            return default
        return lua(engine, _masked(value))

    def show() -> Any:
        return lua(engine, config.to_dict(mask=True))

    def profile() -> Any:
        return config.profile

    def sources() -> Any:
        return lua(engine, [str(s) for s in config.sources])

    expose(engine, "Config", {"get": get, "show": show, "profile": profile, "sources": sources}, DOCS, convert=False)


def _masked(value: Any) -> Any:
    """Sections may hold secrets deeper down: mask them in anything handed to Lua."""
    if isinstance(value, Secret):
        return "****"
    if isinstance(value, dict):
        return {k: "****" if is_secret_key(str(k)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value

"""Secrets in the configuration: which keys hold one, the :class:`Secret` wrapper that never
shows its value, masking, and ``*_env`` indirections (``api_key_env = "OPENAI_API_KEY"``)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

MASK = "****"

SECRET_SUFFIXES = ("api_key", "token", "secret", "password")


def is_secret_key(name: str) -> bool:
    """True when a key named ``name`` holds a secret (ends with api_key/token/secret/password)."""
    return name.lower().replace("-", "_").endswith(SECRET_SUFFIXES)


def secret_indirection(name: str) -> str | None:
    """For ``api_key_env`` return ``api_key`` (the secret it names); else None."""
    lower = name.lower()
    if lower.endswith("_env") and is_secret_key(name[:-4]):
        return name[:-4]
    return None



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

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled (call reveal() where the value is needed)")



def wrap_secrets(node: Any) -> Any:
    """Wrap every string under a secret-named key in :class:`Secret` (in place; returns node)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and is_secret_key(key):
                node[key] = Secret(value)
            else:
                wrap_secrets(value)
    elif isinstance(node, list):
        for item in node:
            wrap_secrets(item)
    return node



def unwrap_secrets(node: Any, mask: bool) -> Any:
    """A copy of ``node`` with every :class:`Secret` replaced by ``****`` (``mask``) or its value."""
    if isinstance(node, Secret):
        return MASK if mask else node.reveal()
    if isinstance(node, dict):
        return {k: unwrap_secrets(v, mask) for k, v in node.items()}
    if isinstance(node, list):
        return [unwrap_secrets(v, mask) for v in node]
    return node



def resolve_indirections(node: dict[str, Any], env: Mapping[str, str], path: tuple[str, ...], warnings: list[str]) -> None:
    """``api_key_env = "VAR"`` -> ``api_key = Secret($VAR)`` when ``api_key`` is not set."""
    for key, value in list(node.items()):
        if isinstance(value, dict):
            resolve_indirections(value, env, path + (key,), warnings)
            continue
        target = secret_indirection(key)
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

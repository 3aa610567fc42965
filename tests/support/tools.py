"""The environment of the built-in tool tests: a private working directory, data directory and a
directory outside every allowed root, a real ToolRegistry (so argument validation is exercised)
and a context under the default security policy. Tools are called on a fresh event loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aikit_components.errors import AikitError, PermissionDenied
from aikit_components.security import SecurityPolicy
from aikit_components.tools import ToolContext, ToolRegistry


class ToolCaller:
    """``call(ctx, name, args)``: a tool of ``registry`` called with ``args`` in ``ctx``."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry

    def __call__(self, ctx: ToolContext, name: str, args: dict[str, Any] | None = None) -> Any:
        return asyncio.run(self.registry.acall(name, args or {}, ctx))


class ToolEnv:
    """``root`` is the working directory, ``data`` the aikit data directory inside it (both
    allowed by the default policy), ``outside`` a directory no policy allows (it holds
    ``secret.txt``); ``registry`` holds every built-in tool, as in a kernel; ``ctx`` is a context
    under the default policy."""

    def __init__(self, root: Path, data: Path, outside: Path) -> None:
        self.root = root
        self.data = data
        self.outside = outside
        self.registry = ToolRegistry().load_builtins()
        self.ctx = ToolContext(self.policy())
        self.caller = ToolCaller(self.registry)

    def policy(self, **overrides: Any) -> SecurityPolicy:
        """The default policy (``root`` and ``data`` allowed) with ``overrides`` of its fields."""
        return dataclasses.replace(SecurityPolicy.default(), **overrides)

    def call(self, name: str, **args: Any) -> Any:
        """Call ``name`` in ``ctx`` (a sync tool synchronously, an async one on a fresh loop)."""
        if self.registry.get(name).is_async:
            return asyncio.run(self.registry.acall(name, args, self.ctx))
        return self.registry.call(name, args, self.ctx)

    def fails(self, expected: type[AikitError] | str, name: str, *fragments: str, **args: Any) -> AikitError:
        """Call ``name``, which must fail with ``expected`` (an error class or code) and a message
        that says something (containing each of ``fragments``, case-insensitive)."""
        with pytest.raises(AikitError) as info:
            self.call(name, **args)
        error = info.value
        if isinstance(expected, str):
            assert error.code == expected, f"expected {expected}, got {error.code}: {error.message}"
        else:
            assert isinstance(error, expected), f"expected {expected.__name__}, got {error!r}"
        assert error.message
        for fragment in fragments:
            assert fragment.lower() in error.message.lower(), f"{fragment!r} not in {error.message!r}"
        return error

    def refuses_destinations_outside(self, name: str, source: str, file: str) -> None:
        """``name`` (a tool with a source and a destination) refuses to write ``file`` outside the
        allowed directories, named by an absolute path or with ``..``; nothing appears there."""
        self.fails(PermissionDenied, name, source=source, destination=str(self.outside / file))
        self.fails(PermissionDenied, name, source=source, destination=f"../{file}")
        assert not (self.outside / file).exists()


def expect_error(code: str, fn: Callable[..., Any], *args: Any) -> AikitError:
    """``fn(*args)`` raises an AikitError with ``code``; that error."""
    with pytest.raises(AikitError) as info:
        fn(*args)
    assert info.value.code == code, f"expected {code}, got {info.value.code}: {info.value.message}"
    return info.value


def assert_documented(item: Any) -> None:
    """A built-in tool documents itself: a description, what it returns, examples, and a
    description of every parameter."""
    assert item.description and item.returns and item.examples, f"{item.name} lacks documentation"
    for name, prop in item.parameters["properties"].items():
        assert prop.get("description"), f"{item.name}.{name} has no description"

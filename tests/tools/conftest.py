"""Shared fixtures for the built-in tool tests: a private working directory and data directory,
a policy rooted there, and a helper that calls a tool through a real ToolRegistry (so argument
validation is exercised) on a fresh event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aikit_components.errors import AikitError
from aikit_components.security import SecurityPolicy
from aikit_components.tools import ToolContext, ToolRegistry


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    data = tmp_path / "data"
    monkeypatch.chdir(work)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(data))
    return work.resolve()


def make_policy(work: Path, **kwargs: Any) -> SecurityPolicy:
    data = (work.parent / "data")
    data.mkdir(exist_ok=True)
    return SecurityPolicy(allowed_paths=[work.resolve(), data.resolve()], **kwargs)


def make_caller(tools: list[Any]) -> Callable[..., Any]:
    registry = ToolRegistry()
    registry.register_all(tools)

    def call(ctx: ToolContext, name: str, args: dict[str, Any] | None = None) -> Any:
        return asyncio.run(registry.acall(name, args or {}, ctx))

    call.registry = registry  # type: ignore[attr-defined]
    return call


def expect_error(code: str, fn: Callable[..., Any], *args: Any) -> AikitError:
    with pytest.raises(AikitError) as info:
        fn(*args)
    assert info.value.code == code, f"expected {code}, got {info.value.code}: {info.value.message}"
    return info.value

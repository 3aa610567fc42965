"""Running the applications of ``examples/applications/`` (issue 19) as a user does, and reading
what they left behind: ``aikit run main.lua`` in a copy of the app's directory, its default model
the scripted model server of ``tests/support/scripted_model.py``; the span store, the audit ledger
and State of its data directory afterwards. A pytest plugin: the ``app`` fixture.

    def test_x(app, scripted_model):
        scripted_model.role("researcher", ...)
        result = app.run("research_summarizer", "the question")
        assert (app.dir / "out" / "answer.md").exists()
        assert "invoke_agent researcher" in app.span_names(result.trace_id)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPLICATIONS = ROOT / "examples" / "applications"
AIKIT = Path(sys.executable).with_name("aikit")


@dataclass
class AppRun:
    """One finished ``aikit run`` of an application."""

    returncode: int
    stdout: str
    stderr: str

    def ok(self) -> AppRun:
        assert self.returncode == 0, f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return self


class AppHarness:
    """Copies an application into a temporary directory and runs it there."""

    def __init__(self, base: Path, model_env: dict[str, str]) -> None:
        self.base = base
        self.model_env = model_env
        self.dir = base / "app"
        self.data_dir = base / "data"
        self.name = ""

    def copy(self, name: str) -> Path:
        """Copy ``examples/applications/NAME`` to :attr:`dir` (once) and return it."""
        if not self.dir.exists():
            shutil.copytree(APPLICATIONS / name, self.dir, ignore=shutil.ignore_patterns("out", "*.ipynb", "data"))
            self.name = name
        return self.dir

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.base),
               "AIKIT_DATA_DIR": str(self.data_dir), "XDG_CONFIG_HOME": str(self.base / "config"),
               "AIKIT_TRUST_PROJECT_CONFIG": "1", "PYTHONPATH": str(ROOT)}
        for name in ("HF_HOME", "SENTENCE_TRANSFORMERS_HOME", "TRANSFORMERS_CACHE", "HF_HUB_OFFLINE"):
            if name in os.environ:
                env[name] = os.environ[name]
        return {**env, **self.model_env, **(extra or {})}

    def run(self, name: str, *args: str, script: str = "main.lua", env: dict[str, str] | None = None,
            timeout: float = 300, check: bool = True) -> AppRun:
        """``aikit run SCRIPT ARGS`` in the app's copy; asserts exit 0 unless ``check`` is false."""
        self.copy(name)
        proc = subprocess.run([str(AIKIT), "run", script, *args], cwd=self.dir, env=self.env(env),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        result = AppRun(proc.returncode, proc.stdout, proc.stderr)
        return result.ok() if check else result

    # ------------------------------------------------------------------ what it left behind
    def json(self, relative: str) -> Any:
        return json.loads((self.dir / relative).read_text(encoding="utf-8"))

    def spans(self, trace_id: str | None = None) -> list[Any]:
        """The spans of ``trace_id`` (default: every stored trace's spans)."""
        from aikit_components.telemetry import SpanStore

        store = SpanStore(self.data_dir / "traces.sqlite")
        try:
            if trace_id:
                return store.trace(trace_id)
            return [s for t in store.traces(limit=1000) for s in store.trace(t.trace_id)]
        finally:
            store.close()

    def span_names(self, trace_id: str | None = None) -> list[str]:
        return [s.name for s in self.spans(trace_id)]

    def artifact_versions(self, name: str) -> list[tuple[Any, str]]:
        """Every stored version of the artifact ``name``, oldest first: (info, text)."""
        from aikit_components.artifacts import ArtifactStore

        store = ArtifactStore(self.data_dir)
        try:
            return [(info, store.get(name, info.version)[1].decode()) for info in store.versions(name)]
        finally:
            store.close()

    def audit(self, *types: str) -> list[Any]:
        """The audit ledger's entries (of ``types``, when given); the chain is verified first."""
        from aikit_components.control.audit import AuditLedger

        ledger = AuditLedger.in_dir(self.data_dir)
        try:
            assert ledger.verify().ok, "the audit ledger's hash chain is broken"
            return list(ledger.entries(types=types))
        finally:
            ledger.close()


@pytest.fixture
def app(tmp_path: Path, scripted_model: Any) -> Iterator[AppHarness]:
    """An :class:`AppHarness` in ``tmp_path`` whose default model is the ``scripted_model`` server."""
    yield AppHarness(tmp_path, scripted_model.env())

"""Every application of examples/applications/ has what issue 19 asks of it (a Lua entry point, a
notebook built from it and up to date, a README saying how to run it locally and on a hosted
model and what it costs, its configuration) and a test of its own here."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from tests.support.applications import APPLICATIONS

APPS = sorted(p for p in APPLICATIONS.iterdir() if (p / "main.lua").exists())
BUILD = runpy.run_path(str(APPLICATIONS / "build_notebooks.py"))


def test_there_are_applications() -> None:
    assert len(APPS) >= 1


@pytest.mark.parametrize("app", APPS, ids=lambda p: p.name)
def test_application_has_its_parts(app: Path) -> None:
    readme = (app / "README.md").read_text()
    for needed in ("aikit run main.lua", "Local model", "Hosted model", "What it costs", "How it is tested"):
        assert needed in readme, f"{app.name}/README.md does not say {needed!r}"
    assert (app / "aikit.toml").exists() or (app / "mission.yaml").exists()
    notebook = app / f"{app.name}.ipynb"
    assert notebook.read_text() == BUILD["text"](app), f"{notebook.name} is out of date: run {BUILD['__file__']}"
    assert (Path(__file__).parent / f"test_{app.name}.py").exists()

"""Components for the workflow engine tests (config in memory, data under ``tmp_path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aikit_components.components import Components
from aikit_components.config import Config


def make_components(tmp_path: Path, **sections: Any) -> Components:
    data = {"security": {"env_allowlist": ["AIKIT_WF_ALLOWED"]}, "wf_test": {"greeting": "hello", "n": 3}}
    data.update(sections)
    return Components.open(config=Config(data), data_dir=tmp_path / "data", plugins=False)

"""Bad input and failure of the ``ray`` executor that need no cluster: an address that does not
answer, a step that cannot be shipped, an unknown executor. Each is an error naming what to fix,
raised before anything runs."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.errors import ValidationError
from aikit_components.workflows import engine
from aikit_components.workflows.missions import parse_mission, validate_mission
from aikit_components.workflows.model import Step, Workflow

MISSION = """
name: tiny
steps:
  - id: hello
    step_type: command
    parameters: {command: echo, args: [hi]}
"""


AIKIT = str(Path(sys.executable).with_name("aikit"))


def aikit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI (``aikit mission ...``) in ``cwd``, private data directory, no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "RAY_ADDRESS"))}
    env.update(AIKIT_DATA_DIR=str(cwd / "data"), XDG_CONFIG_HOME=str(cwd / "config"))
    return subprocess.run([AIKIT, "mission", *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_that_does_not_answer_is_a_clear_error_before_the_run(tmp_path: Path) -> None:
    mission = tmp_path / "tiny.yaml"
    mission.write_text(MISSION)
    address = f"127.0.0.1:{free_port()}"
    result = aikit(tmp_path, "run", str(mission), "--ray", address)
    assert result.returncode == 1
    assert f"the Ray cluster at '{address}' does not answer" in result.stderr
    assert "ray start --head" in result.stderr and "[ray] address" in result.stderr
    assert "hello" not in result.stdout  # nothing ran
    assert not (tmp_path / "data" / "runs").exists()


def test_a_python_step_that_cannot_be_pickled_is_an_error_before_the_run(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    lock = threading.Lock()

    def holds_a_lock(params: Any, ctx: Any) -> bool:
        with lock:
            return True

    config = Config.load(cwd=tmp_path, env={}, user_dir=tmp_path / "user-config")
    with Components.open(config=config, data_dir=tmp_path / "data", plugins=False) as components:
        wf = Workflow("unshippable", [Step("locked", "function", fn=holds_a_lock)], executor="ray")
        with pytest.raises(ValidationError) as caught:
            asyncio.run(engine.run(wf, components=components, run_id="never"))
        message = caught.value.message
        assert "cannot run on Ray" in message and "step 'locked'" in message and "cannot be pickled" in message
        assert engine.load_run(components, "never") is None  # nothing was recorded


def test_an_unknown_executor_is_a_validation_problem(tmp_path: Path) -> None:
    mission = tmp_path / "m.yaml"
    mission.write_text(MISSION.replace("steps:", "config: {executor: spark}\nsteps:"))
    problems = validate_mission(parse_mission(str(mission)))
    assert any("config.executor: expected one of local, ray, got 'spark'" in p for p in problems), problems
    assert any("executor must be one of 'local', 'ray'" in p
               for p in engine.validate(Workflow("w", [Step("a")], executor="spark")))

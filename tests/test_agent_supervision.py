"""An agent supervised as an actor, with the real local model (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the local model is installed by `make` (aikit[local])")

from aikit_components.components import Components  # noqa: E402
from aikit_kernel.lua_runtime import build_lua_runtime  # noqa: E402
from tests.support.lua import RecordingOutput  # noqa: E402


@pytest.mark.slow
def test_supervised_agent_answers_calls_with_the_local_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    components = Components.open(data_dir=tmp_path / "data", plugins=False)
    engine = build_lua_runtime(RecordingOutput(), components).engine
    try:
        result = engine.run_cell(
            'local sup = Supervisor.new{children = {{name = "writer", start = function()\n'
            '  return Agent.new{name = "writer", max_tokens = 6}\n'
            'end}}}:start()\n'
            'local r = sup:call("writer", {input = "The sky is"}, 60)\n'
            'local kids = sup:children()\n'
            'sup:stop()\n'
            'return r.model, r.steps, r.usage.output_tokens > 0, kids[1].state', "[1]")
        assert result.error is None, result.error
        assert engine.render_values(result.values) == '"local/gemma3-270m"\t1\ttrue\t"running"'
    finally:
        engine.close()
        components.close()

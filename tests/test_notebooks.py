"""nbclient executes every notebook under examples/ on the real aikit kernel; outputs are checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "examples").rglob("*.ipynb"))


def execute(path: Path, workdir: Path) -> Any:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="aikit", timeout=120, resources={"metadata": {"path": str(workdir)}})
    os.environ["AIKIT_DATA_DIR"] = str(workdir / "data")  # inherited by the kernel process
    client.execute()
    return nb


def outputs_of(nb: Any, marker: str) -> list[dict[str, Any]]:
    """The outputs of the first code cell whose source contains ``marker``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and marker in cell.source:
            return cell.outputs
    raise AssertionError(f"no cell contains {marker!r}")


def stdout_of(outputs: list[dict[str, Any]]) -> str:
    """All stdout text of a cell: the kernel may split one cell's prints into several stream messages."""
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_without_errors(path: Path, tmp_path: Path) -> None:
    nb = execute(path, tmp_path)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_tour_outputs(tmp_path: Path) -> None:
    nb = execute(ROOT / "examples" / "notebooks" / "tour.ipynb", tmp_path)
    first = outputs_of(nb, 'print("hello from Lua"')
    assert first[0]["text"] == "hello from Lua\tLua 5.4\n"
    assert first[1]["data"]["text/plain"] == "2"
    streams = outputs_of(nb, 'io.write("no newline, "')
    assert [(o["name"], o["text"]) for o in streams] == [("stdout", "no newline, 42\n"), ("stderr", "this goes to stderr\n")]
    assert outputs_of(nb, "shout(greeting)")[0]["data"]["text/plain"] == '"BONJOUR!"'
    assert "<cycle: table" in outputs_of(nb, "config.self = config")[0]["data"]["text/plain"]
    records = outputs_of(nb, 'city = "Lisbon"')
    assert len(records) == 1 and records[0]["output_type"] == "display_data"  # the handle is not echoed
    assert "<th>city</th>" in records[0]["data"]["text/html"]
    assert "<td>Porto</td><td>232000</td>" in records[0]["data"]["text/html"]
    progress = outputs_of(nb, 'id = "progress"')
    assert progress[0]["data"]["text/html"] == "<b>100%</b>"  # updated in place
    assert outputs_of(nb, "coroutine.wrap")[0]["data"]["text/plain"] == "1\t4\t9"
    assert outputs_of(nb, 'io.lines("tour-output.txt")')[0]["text"] == "read back:\twritten by the tour\n"
    assert not (tmp_path / "tour-output.txt").exists()
    denied = outputs_of(nb, 'io.open("/etc/passwd")')[0]["data"]["text/plain"]
    assert denied.startswith("nil\t") and "outside the allowed paths" in denied


def test_tour_components_outputs(tmp_path: Path) -> None:
    nb = execute(ROOT / "examples" / "notebooks" / "tour.ipynb", tmp_path)
    stats = outputs_of(nb, 'Tool.call("text_stats"')
    text = "".join(o.get("text", "") for o in stats)
    assert text.startswith("6\t2\ninvalid_argument\n") and "text: expected string" in text and "algo: unknown" in text
    assert outputs_of(nb, 'name = "word_count"')[0]["data"]["text/plain"] == "{words = 3}"
    assert outputs_of(nb, '"visits", 0')[0]["data"]["text/plain"] == "3"
    watched = "".join(o.get("text", "") for o in outputs_of(nb, "Hook.register"))
    assert "false\tcancelled: tool 'word_count' cancelled by a hook: text too long" in watched
    assert "tool.called:word_count, tool.finished:word_count, tool.failed:word_count" in watched
    artifact = outputs_of(nb, "Artifact.put")
    assert artifact[0]["text"].startswith("tour/summary.md\tversion\t1\t")
    assert artifact[1]["data"]["text/markdown"].startswith("# Summary")


def test_agents_notebook_streams_with_the_local_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the local model is installed by `make` (aikit[local])")
    nb = execute(ROOT / "examples" / "notebooks" / "agents.ipynb", tmp_path)
    streamed = outputs_of(nb, "storyteller:run")
    kinds = [o["output_type"] for o in streamed]
    assert kinds[0] == "display_data" and kinds[-1] == "stream"  # the updating display, then the summary line
    assert streamed[-1]["text"].startswith("local/gemma3-270m\t")
    usage = outputs_of(nb, "Agent.total_usage()")[0]["data"]["text/plain"]
    assert "total_tokens" in usage
    # the tool-using agent runs on a clearly labelled test model (issue 17)
    scripted = stdout_of(outputs_of(nb, "TEST MODEL"))
    assert scripted.startswith("17 × 23 = 391 (checked with the calculate tool).\n2 model calls; tool calculate "
                               "returned 391\n")
    assert '"calculate"' in scripted and '"hash"' in scripted


def test_workflows_notebook(tmp_path: Path) -> None:
    nb = execute(ROOT / "examples" / "notebooks" / "workflows.ipynb", tmp_path)
    run = outputs_of(nb, 'name = "report"')
    progress = [o for o in run if o["output_type"] == "display_data"]
    assert progress and "<table>" in progress[0]["data"]["text/html"]
    assert "5/5 steps" in progress[0]["data"]["text/plain"]  # updated in place to the final state
    summary = run[-1]["text"]
    assert summary.startswith("succeeded\ttotal 26 from a and b\t")
    resumed = stdout_of(outputs_of(nb, 'name = "flaky"'))
    assert resumed == "failed\tfailed\nsucceeded\tpublished\tattempts:\t2\n"

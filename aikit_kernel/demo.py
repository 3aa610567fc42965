"""``make demo``: run the tour notebook through the aikit kernel and an example script.

Executes ``examples/notebooks/tour.ipynb`` (and the workflows and agents notebooks) with nbclient
(a real kernel over ZMQ), saves the executed copies under ``out/``, runs ``aikit run
examples/hello.lua``, a tool-using agent on a test model (``examples/agent_with_tools.lua``) and the
retrieval example ``examples/rag/search.lua`` (local embeddings), then an application (the research
summarizer of ``examples/applications/``: its answer, citations and trace),
and says how to open the notebooks in JupyterLab and how to debug a script from an IDE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "examples" / "notebooks" / "tour.ipynb"
MORE = [ROOT / "examples" / "notebooks" / name for name in ("workflows.ipynb", "agents.ipynb")]
HELLO = ROOT / "examples" / "hello.lua"
RAG_EXAMPLE = ROOT / "examples" / "rag" / "search.lua"
TOOLS_EXAMPLE = ROOT / "examples" / "agent_with_tools.lua"
OUT = ROOT / "out"


def run_notebook(source: Path, target: Path) -> int:
    """Execute ``source`` on the aikit kernel, write it to ``target``; return the error count."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(nb, kernel_name="aikit", timeout=120, resources={"metadata": {"path": str(OUT)}})
    client.execute()
    nbformat.write(nb, target)
    return sum(1 for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    target = OUT / "tour.ipynb"
    print(f"==> Executing {TOUR.relative_to(ROOT)} on the aikit kernel ...", flush=True)
    started = time.perf_counter()
    errors = run_notebook(TOUR, target)
    print(f"    done in {time.perf_counter() - started:.1f} s, {errors} error output(s)")
    for notebook in MORE:
        print(f"==> Executing {notebook.relative_to(ROOT)} ...", flush=True)
        started = time.perf_counter()
        more = run_notebook(notebook, OUT / notebook.name)
        errors += more
        print(f"    done in {time.perf_counter() - started:.1f} s, {more} error output(s)")
    print(f"\n==> aikit run {HELLO.relative_to(ROOT)}\n", flush=True)
    aikit = Path(sys.executable).with_name("aikit")
    status = subprocess.call([str(aikit), "run", str(HELLO), "demo"], cwd=ROOT)
    print(f"\n==> aikit run {TOOLS_EXAMPLE.relative_to(ROOT)}   (a tool-using agent on a TEST model: scripted "
          "answers, not a language model; the packaged local model above cannot call tools)\n", flush=True)
    status |= subprocess.call([str(aikit), "run", str(TOOLS_EXAMPLE)], cwd=ROOT)
    print(f"\n==> aikit run {RAG_EXAMPLE.relative_to(ROOT)}   (retrieval with the local embedding model)\n", flush=True)
    status |= subprocess.call([str(aikit), "run", str(RAG_EXAMPLE)], cwd=ROOT)
    status |= run_application(aikit)
    rel = target.relative_to(ROOT)
    print(
        f"\n==> The executed notebooks are in out/ ({rel}, out/workflows.ipynb, out/agents.ipynb)\n"
        f"    Open it in JupyterLab:  .venv/bin/pip install jupyterlab && .venv/bin/jupyter lab {rel}\n"
        "    (the kernel is named \"aikit (Lua)\"; it is already installed in .venv; its debugger is the bug icon)\n"
        "    Debug a script from VS Code or Neovim:  .venv/bin/aikit debug --port 5678 examples/hello.lua\n"
        "    (then attach to port 5678; see docs/debugging.md)\n"
        "    An interactive Lua prompt with the same globals:  .venv/bin/aikit repl"
    )
    return 1 if (errors or status) else 0


def run_application(aikit: Path) -> int:
    """The research summarizer (examples/applications/): its answer, citations and trace. On a
    model set with AIKIT_MODELS__DEFAULT it runs as is; otherwise on the Lua test model its
    notebook uses (a scripted stand-in: the packaged local model cannot call tools)."""
    app = ROOT / "examples" / "applications" / "research_summarizer"
    work = OUT / "research_summarizer"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(app, work, ignore=shutil.ignore_patterns("out", "*.ipynb"))
    script = "main.lua"
    if not os.environ.get("AIKIT_MODELS__DEFAULT"):
        script = "demo.lua"
        (work / script).write_text((app / "notebook_setup.lua").read_text() + (app / "main.lua").read_text())
    print(f"\n==> aikit run {app.relative_to(ROOT)}/main.lua   (an application: two agents, RAG, cited answer; "
          + ("on AIKIT_MODELS__DEFAULT)\n" if script == "main.lua" else
             "on its notebook's TEST model, a scripted stand-in; set AIKIT_MODELS__DEFAULT=openai/gpt-4o-mini "
             "for a real one)\n"), flush=True)
    status = subprocess.call([str(aikit), "run", script], cwd=work)
    citations = work / "out" / "citations.json"
    if citations.exists():
        trace_id = json.loads(citations.read_text()).get("trace_id")
        print(f"\n==> aikit trace show {trace_id}\n", flush=True)
        status |= subprocess.call([str(aikit), "trace", "show", str(trace_id)], cwd=work)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Builds each application's notebook from its files, so the two never drift apart:

    python examples/applications/build_notebooks.py          # rewrite every NAME/NAME.ipynb
    python examples/applications/build_notebooks.py --check  # exit 1 when one is out of date

A notebook is: a title cell (the README's title and first paragraph); a setup cell that writes the
app's input files (``corpus/``, ``inputs/``, ``*.yaml``) into the notebook's directory and runs
``notebook_setup.lua``, which defines ``APP_MODEL``, a clearly labelled **test model** (a Lua
function answering like a capable model would), so the notebook runs offline; then ``main.lua``
cut into cells at its ``-- %%`` lines. Delete the setup cell's ``APP_MODEL`` to use the model
configured in aikit.toml instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INPUT_DIRS = ("corpus", "inputs")


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _cell(kind: str, text: str, index: int) -> dict:
    cell = {"cell_type": kind, "id": f"c{index:03d}", "metadata": {}, "source": _lines(text.rstrip("\n"))}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _lua_string(text: str) -> str:
    level = "="
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[\n{text}]{level}]"


def build(app: Path) -> dict:
    readme = (app / "README.md").read_text(encoding="utf-8").split("\n\n")
    intro = readme[0] + "\n\n" + readme[1] + "\n\n" + (
        "This notebook runs offline: its first cell writes the app's input files and sets up a **test "
        "model** (a Lua function, or a hook, answering as a capable model would). Remove the test model "
        "there to run the agents on the model of your aikit.toml (see the README).")
    setup = ["-- TEST MODEL and input files: the notebook's stand-in for a capable model (see README.md)"]
    inputs = [p for d in INPUT_DIRS if (app / d).is_dir() for p in sorted((app / d).rglob("*"))]
    for path in sorted(app.glob("*.yaml")) + inputs:
        if path.is_file():
            rel = path.relative_to(app).as_posix()
            setup.append(f'Tool.call("write_file", {{path = "{rel}", create_dirs = true, content = '
                         f'{_lua_string(path.read_text(encoding="utf-8"))}}})')
    setup.append((app / "notebook_setup.lua").read_text(encoding="utf-8"))
    cells = [_cell("markdown", intro, 0), _cell("code", "\n".join(setup), 1)]
    chunks = (app / "main.lua").read_text(encoding="utf-8").split("\n-- %% ")
    if chunks[0].strip():
        cells.append(_cell("markdown", "".join(line[3:] if line.startswith("-- ") else line.lstrip("-")
                                               for line in _lines(chunks[0])), len(cells)))
    for chunk in chunks[1:]:
        title, _, code = chunk.partition("\n")
        cells.append(_cell("markdown", "### " + title.strip(), len(cells)))
        cells.append(_cell("code", code, len(cells)))
    return {"cells": cells, "metadata": {
        "kernelspec": {"display_name": "aikit (Lua)", "language": "lua", "name": "aikit"},
        "language_info": {"file_extension": ".lua", "mimetype": "text/x-lua", "name": "lua"}},
        "nbformat": 4, "nbformat_minor": 5}


def text(app: Path) -> str:
    return json.dumps(build(app), indent=1, ensure_ascii=False) + "\n"


def apps() -> list[Path]:
    return sorted(p for p in HERE.iterdir() if (p / "main.lua").exists() and (p / "notebook_setup.lua").exists())


def main(argv: list[str]) -> int:
    stale = []
    for app in apps():
        target = app / f"{app.name}.ipynb"
        wanted = text(app)
        if target.exists() and target.read_text(encoding="utf-8") == wanted:
            continue
        if "--check" in argv:
            stale.append(target.name)
        else:
            target.write_text(wanted, encoding="utf-8")
            print("wrote", target.relative_to(HERE))
    if stale:
        print("out of date (run examples/applications/build_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

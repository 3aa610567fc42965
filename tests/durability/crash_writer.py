"""The process the kill-loop test SIGKILLs: a *zygote* that imports aikit once, then forks one
writer per life on request, so the 200+ lives of the test do not each pay the imports.

Protocol (the zygote's stdin and stdout, one line per message):

- test -> zygote ``life N``: fork writer number N. Zygote -> test: ``pid PID``.
- writer -> test: one acknowledgement line per write, written with a single ``os.write`` of less
  than PIPE_BUF bytes (atomic: a SIGKILL never leaves half a line) *after* the write returned:
  ``ack KIND FIELDS...`` (see :func:`writer`).
- zygote -> test ``reaped PID`` once the writer is gone (every line it wrote is before this one).
- test -> zygote ``final N``: a writer that makes one write of each kind and exits 0
  (``done`` then ``reaped``), started the same way as the others.

Nothing is opened in the zygote: each writer opens the stores itself, as a fresh process would.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.state import MISSING
from aikit_components.workflows import Step, Workflow
from aikit_components.workflows import run as run_workflow


def ack(*fields: object) -> None:
    line = " ".join(str(f) for f in fields) + "\n"
    os.write(1, line.encode())


def writer(data_dir: Path, life: int, final: bool) -> None:
    """Write forever (or once of each kind when ``final``), acknowledging each durable write."""
    comps = Components.open(config=Config({"telemetry": {"enabled": False}}), data_dir=data_dir, plugins=False)
    ack("opened", life)
    loop = asyncio.new_event_loop()
    workflow = Workflow("crash", steps=[Step("a"), Step("b", depends_on=["a"])])
    state, artifacts, journal, audit = comps.state, comps.artifacts, comps.journal, comps.audit
    assert audit is not None and journal is not None
    i = 0
    while True:
        tag = f"{life}_{i}"
        state.set("global", f"k{tag}", {"life": life, "i": i})
        ack("ack", "set", f"k{tag}", i)
        counter = state.update("global", "counter", lambda old: (old or 0) + 1)
        ack("ack", "update", counter)
        current = state.get("global", "cas") or 0
        if state.compare_and_set("global", "cas", current or MISSING, current + 1):
            ack("ack", "cas", current + 1)
        content = f"life {life} write {i} " + "x" * (i % 7 * 300)
        info = artifacts.put(f"art{life % 5}", content.encode())
        ack("ack", "artifact", info.name, info.version, info.sha256)
        record = loop.run_until_complete(run_workflow(workflow, components=comps, run_id=f"run{tag}"))
        if record.status == "succeeded":
            ack("ack", "run", record.run_id)
        journal.started(f"jr{tag}", "c#0", "tool", "echo", "sha256:x")
        journal.finished(f"jr{tag}", "c#0", {"result": {"i": i}})
        ack("ack", "journal", f"jr{tag}")
        audit.record("test.write", {"tag": tag})  # durable before it returns
        ack("ack", "audit", tag)
        audit.record("test.write", {"tag": f"{tag}-wal"}, fsync=False)  # committed to the WAL: survives kill -9
        ack("ack", "audit", f"{tag}-wal")
        i += 1
        if final:
            comps.close()
            ack("done", life)
            return


def main() -> None:
    data_dir = Path(sys.argv[1])
    for line in sys.stdin:
        word, _, number = line.strip().partition(" ")
        if word not in ("life", "final"):
            continue
        pid = os.fork()
        if pid == 0:  # the writer
            code = 1
            try:
                writer(data_dir, int(number), final=word == "final")
                code = 0
            except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
                ack("error", type(exc).__name__, str(exc).replace("\n", " ")[:300])
            finally:
                os._exit(code)
        ack("pid", pid)
        _, status = os.waitpid(pid, 0)
        ack("reaped", pid, status)


if __name__ == "__main__":
    main()

"""Progress of a long run (a workflow or a plan) in ``aikit run``: steps done, running and failed,
the time so far, and the tokens and cost of the model calls made meanwhile.

On a terminal a live status line (rich) stays at the bottom, with a line above it for each step as
it finishes; elsewhere (a log, a pipe) each finished step is one plain line and the run ends with a
summary line. Tokens and cost come from the ``llm.finished`` events of the components' event bus
(cost at ``[models.prices]``; unknown without a price).
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO

#: Marks of a finished step (a workflow step's or a plan task's), by status.
MARKS = {"succeeded": "✔", "ok": "✔", "noop": "·", "skipped": "↷", "not_run": "·", "failed": "✘", "error": "✘",
         "refused": "✘", "upstream_failed": "⇡✘", "cancelled": "⊘", "interrupted": "⊘", "timed_out": "⏱",
         "timeout": "⏱"}
SUCCEEDED = ("succeeded", "ok")
FAILED = ("failed", "error", "refused", "upstream_failed", "timed_out", "timeout", "cancelled", "interrupted")

def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def seconds(value: float | None) -> str:
    """``850 ms``, ``3.2 s``, ``2m05s``; ``-`` for None."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"


class UsageMeter:
    """Tokens and cost of the model calls finished while it listens (``llm.finished`` events)."""

    def __init__(self, components: Any = None) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost: float | None = None
        self._lock = threading.Lock()
        self._telemetry = getattr(components, "telemetry", None)
        events = getattr(components, "events", None)
        self._subscription = events.subscribe("llm.finished", self._on_event) if events is not None else None

    def _on_event(self, event: Any) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {}
        usage = payload.get("usage") or {}
        tokens_in, tokens_out = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        cost = None
        if self._telemetry is not None and payload.get("model"):
            try:
                cost = self._telemetry.cost(str(payload["model"]), tokens_in, tokens_out)
            except Exception:  # a price table problem must not break the run
                cost = None
        with self._lock:
            self.input_tokens += tokens_in
            self.output_tokens += tokens_out
            if cost is not None:
                self.cost = (self.cost or 0.0) + cost

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def describe(self) -> str:
        """``1,234 tokens, $0.0031`` (empty before any model call)."""
        if not self.tokens:
            return ""
        text = f"{self.tokens:,} tokens"
        return text + (f", ${self.cost:.4f}" if self.cost is not None else "")

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None


class RunProgress:
    """The progress display of one run of ``total`` steps called ``name``, written to ``stream``."""

    def __init__(self, name: str, total: int, stream: TextIO, *, tty: bool | None = None, components: Any = None,
                 noun: str = "step", output: Any = None) -> None:
        """``output``: a :class:`~aikit_kernel.output.TerminalOutput` whose writes go above the live
        line while it shows (else they would land in the middle of it)."""
        self.name = name
        self.total = total
        self.stream = stream
        self.noun = noun
        self.tty = _isatty(stream) if tty is None else tty
        self.started = time.monotonic()
        self.running: list[str] = []
        self.finished: dict[str, str] = {}
        self.meter = UsageMeter(components)
        self._live: Any = None
        self._console: Any = None
        self._lock = threading.Lock()
        self._output = output
        self._diverted: tuple[Any, Any] | None = None
        self._closed = False
        if self.tty:
            self._start_live()

    # ---------------------------------------------------------------- what happened
    def step_started(self, step_id: str) -> None:
        with self._lock:
            if step_id not in self.running and step_id not in self.finished:
                self.running.append(step_id)
            self._refresh()

    def step_finished(self, step_id: str, status: str, duration_s: float | None = None, error: str = "") -> None:
        with self._lock:
            if step_id in self.finished:
                return
            if step_id in self.running:
                self.running.remove(step_id)
            self.finished[step_id] = status
            mark = MARKS.get(status, "?")
            took = seconds(duration_s) if duration_s is not None else ""
            detail = " ".join(str(error).split())[:300] if error else ""
            count = f"[{len(self.finished)}/{self.total}]"
            if self._console is not None:
                from rich.markup import escape

                style = "red" if status in FAILED else "green" if status in SUCCEEDED else "yellow"
                why = f" [red]{escape(detail)}[/]" if detail else ""
                self._console.print(f"  [{style}]{mark}[/] {escape(self.name)} [dim]{count}[/] {escape(step_id)}: "
                                    f"[{style}]{status}[/] [dim]{took}[/]{why}")
                self._refresh()
            else:
                self.stream.write(f"  {mark} {self.name} {count} {step_id}: {status}" + (f" ({took})" if took else "")
                                  + (f": {detail}" if detail else "") + "\n")
                self.stream.flush()

    def close(self) -> None:
        """Stop the live line and print the summary: counts by status, time, tokens and cost (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._live is not None:
                self._restore_output()
                self._live.stop()
                self._live = None
            self.meter.close()
            self.stream.write(self.summary() + "\n")
            self.stream.flush()

    # ---------------------------------------------------------------- rendering
    def counts(self) -> str:
        by_status: dict[str, int] = {}
        for status in self.finished.values():
            by_status[status] = by_status.get(status, 0) + 1
        return ", ".join(f"{n} {status}" for status, n in by_status.items())

    def summary(self) -> str:
        """``report: 5/5 steps (4 succeeded, 1 failed) in 3.2 s, 1,234 tokens, $0.0031``."""
        plural = "s" if self.total != 1 else ""
        counts = self.counts()
        parts = [f"{self.name}: {len(self.finished)}/{self.total} {self.noun}{plural}"
                 + (f" ({counts})" if counts else "") + f" in {seconds(time.monotonic() - self.started)}"]
        usage = self.meter.describe()
        if usage:
            parts.append(usage)
        return ", ".join(parts)

    def status_line(self) -> str:
        """What the live line says: done/total, failed, running, time, tokens and cost."""
        failed = sum(1 for s in self.finished.values() if s in FAILED)
        parts = [f"{self.name}: {len(self.finished)}/{self.total} done"]
        if failed:
            parts.append(f"{failed} failed")
        if self.running:
            shown = ", ".join(self.running[:3]) + (f" +{len(self.running) - 3}" if len(self.running) > 3 else "")
            parts.append(f"running {shown}")
        parts.append(seconds(time.monotonic() - self.started))
        usage = self.meter.describe()
        if usage:
            parts.append(usage)
        return " · ".join(parts)

    def _start_live(self) -> None:
        try:
            from rich.console import Console
            from rich.live import Live
            from rich.spinner import Spinner
        except ImportError:
            self.tty = False
            return
        spinner = Spinner("dots", text="")
        progress = self

        class _Status:  # rendered at each refresh: the spinner turns, its text is the status line
            def __rich__(self) -> Any:
                spinner.update(text=progress.status_line())
                return spinner

        self._console = Console(file=self.stream, force_terminal=True, highlight=False)
        self._live = Live(_Status(), console=self._console, refresh_per_second=8, transient=True,
                          redirect_stdout=False, redirect_stderr=False)
        if self._output is not None and hasattr(self._output, "swap_streams"):
            from rich.file_proxy import FileProxy

            out, err = self._diverted = self._output.streams
            # Output on the same screen goes above the line (a stdout that is a file stays as it is).
            self._output.swap_streams(FileProxy(self._console, out) if _isatty(out) else out,
                                      FileProxy(self._console, err) if _isatty(err) else err)
        self._live.start()

    def _restore_output(self) -> None:
        if self._diverted is None:
            return
        proxies = self._output.swap_streams(*self._diverted)
        self._diverted = None
        for proxy in proxies:  # a FileProxy writes what it still holds; a plain stream just flushes
            proxy.flush()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

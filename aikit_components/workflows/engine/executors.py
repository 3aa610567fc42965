"""The step kinds: how a ``tool``, ``function``, ``command``, ``llm``, ``agent`` or ``noop`` step
does its work (``workflow`` steps are nested runs, in ``runner``)."""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Mapping
from typing import Any

from ...agents.llm_call import ModelCall, refusal
from ...errors import AikitError, InvalidArgument
from ...providers.fallback import FallbackChain
from ...providers.messages import Completion, Message, Request
from ..model import Step
from ..validation import _FALLBACK_PROBLEM, _agent_spec, _Node


class _Executors:
    """Dispatching a step (or one loop iteration) to its kind.

    A part of the run's scheduler (``runner._Runner`` mixes it in); it uses the run's state set up
    in ``_Runner.__init__``."""

    async def _dispatch(self, node: _Node, params: Any, frame: dict[str, Any] | None, attempt: int) -> Any:
        step = node.step
        kind = step.kind
        if kind == "noop":
            return dict(params) if isinstance(params, dict) else params
        if kind == "tool":
            return await self.components.tools.acall(step.target, params, self.tool_ctx)
        if kind == "function":
            result = step.fn(params, self._context(step.id, attempt, frame))  # type: ignore[misc]
            if inspect.isawaitable(result):
                result = await result
            return result
        if kind == "command":
            return await self._command(step, params)
        if kind == "llm":
            return await self._llm(step, params)
        if kind == "agent":
            spec = _agent_spec(step.target, getattr(self.components, "config", None))
            text = params.get("input") if isinstance(params, Mapping) else params
            agent = self.components.new_agent(spec)
            result = await agent.run(text if isinstance(text, str) else _text(text))
            return result.to_dict()
        if kind == "workflow":
            return await self._nested(node, params, frame, attempt)
        raise InvalidArgument(f"step {step.id!r}: unknown kind {kind!r}")

    async def _command(self, step: Step, params: Any) -> Any:
        args = dict(params)
        check = args.pop("check", True)
        command = args.get("command")
        if isinstance(command, str):
            args["command"] = command = shlex.split(command)
        elif isinstance(command, list):  # a whole-string template keeps its type: argv needs text
            args["command"] = command = [
                ("true" if a else "false") if isinstance(a, bool) else str(a) if isinstance(a, (int, float)) else a
                for a in command]
        if step.timeout_s is not None and args.get("timeout_s") is None:
            args["timeout_s"] = step.timeout_s + 5  # the step's own timeout cancels (and kills) first
        result = await self.components.tools.acall("run_process", args, self.tool_ctx)
        code = result.get("exit_code") if isinstance(result, Mapping) else None
        if check and code != 0:
            stderr = (result.get("stderr") or "").strip()[-500:]
            program = command[0] if command else "?"
            raise AikitError(f"command {program!r} exited with code {code}" + (f": {stderr}" if stderr else "")
                             + " (set params.check = false to accept non-zero exits)",
                             code="command_failed", details={"result": result})
        return result

    async def _llm(self, step: Step, params: Any) -> Any:
        """One completion, made as an agent makes its model calls (hooks ``llm.*``, events, the
        ledger), the step naming itself by ``{workflow, run_id, step}``; ``params.fallback`` lists
        models tried in turn when the one before is unavailable."""
        prompt = params.get("prompt")
        if not isinstance(prompt, str):
            prompt = _text(prompt)
        configured = params.get("model") or "default"
        messages = [Message.system(str(params["system"]))] if params.get("system") else []
        messages.append(Message.user(prompt))
        request = Request(model="", messages=messages, temperature=params.get("temperature"),
                          max_tokens=params.get("max_tokens"), json_schema=params.get("json_schema"))
        fallback = params.get("fallback") or []
        if not isinstance(fallback, list) or not all(isinstance(m, str) for m in fallback):
            raise InvalidArgument(f"step {step.id!r}: {_FALLBACK_PROBLEM}, got {_text(fallback)[:200]}")
        chain = FallbackChain(self.components.models, [configured, *fallback], events=self.events)
        ledger = getattr(self.components, "ledger", None)
        payer = f"workflow:{self.wf.name}"

        def account(completion: Completion) -> None:
            if ledger is not None:
                ledger.record(payer, completion.model, completion.usage)

        call = ModelCall(chain, configured, {"workflow": self.wf.name, "run_id": self.record.run_id, "step": step.id},
                         hooks=self.hooks, events=self.events, source="workflow", account=account)
        completion = await call.ask(request)
        output = {"text": completion.text, "model": completion.model, "usage": completion.usage.to_dict(),
                  "stop_reason": completion.stop_reason}
        if completion.stop_reason == "content_filter":
            output["refusal"] = refusal(completion, configured)
        return output


def _text(value: Any) -> str:
    from ..templates import format_value

    return format_value(value)

"""Which steps can be shipped to a Ray worker, checked before a run starts.

- ``tool`` steps: any tool the worker has (the built-in tools and installed plugins); a tool
  defined in Lua in this kernel cannot be shipped.
- ``command``, ``llm``, ``agent`` steps: always (their params are data).
- ``function`` steps: a function that knows how to ship itself (its ``fn`` has the attribute
  :data:`SHIP`, a callable returning the picklable callable to run on the worker or raising
  :class:`NotShippable`; the Lua binding gives Lua functions one), or a Python function that
  pickles (module-level functions, closures over data).
- ``noop`` and ``workflow`` steps, conditions and loops run in the calling process.
"""

from __future__ import annotations

from typing import Any

from ..errors import AikitError, ValidationError
from ..workflows.model import Workflow

#: Attribute of a function step's ``fn``: ``fn.__aikit_ship__()`` -> the callable to ship.
SHIP = "__aikit_ship__"
#: Step kinds whose work runs on a worker.
REMOTE_KINDS: frozenset[str] = frozenset({"tool", "command", "llm", "agent", "function"})


class NotShippable(AikitError):
    """A step that cannot run on a Ray worker; the message says why and what to change."""

    code = "not_shippable"


def ship_payloads(workflow: Workflow, components: Any) -> dict[str, Any]:
    """The callable to ship for each ``function`` step of ``workflow``; raises a
    :class:`ValidationError` listing every step that cannot run on a worker."""
    problems: list[str] = []
    payloads: dict[str, Any] = {}
    tools = getattr(components, "tools", None)
    for step in workflow.steps:
        try:
            if step.kind == "function":
                payloads[step.id] = function_payload(step.fn)
            elif (step.kind == "tool" and tools is not None and isinstance(step.target, str) and step.target in tools
                  and tools.get(step.target).source == "lua"):
                raise NotShippable(f"tool {step.target!r} is defined in Lua in this kernel, so a Ray worker "
                                   "does not have it; call it from a local workflow, or make it a Python "
                                   "plugin tool installed on the workers")
        except NotShippable as exc:
            problems.append(f"step {step.id!r}: {exc.message}")
    if problems:
        raise ValidationError(f"workflow {workflow.name!r} cannot run on Ray (executor = \"ray\"):", problems,
                              details={"workflow": workflow.name})
    return payloads


def function_payload(fn: Any) -> Any:
    """What to ship for a function step's ``fn`` (see the module docstring)."""
    ship = getattr(fn, SHIP, None)
    if ship is not None:
        return ship()
    from ray import cloudpickle

    try:
        cloudpickle.dumps(fn)
    except Exception as exc:
        raise NotShippable(f"its Python function {getattr(fn, '__qualname__', fn)!r} cannot be pickled for a Ray "
                           f"worker ({type(exc).__name__}: {exc}); use a module-level function whose "
                           "closure holds only data") from None
    return fn

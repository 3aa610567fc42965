"""YAML missions (the RustChain mission format) -> :class:`~.model.Workflow`.

A mission is ``version``, ``name``, ``description``, ``config`` and ``steps``::

    name: "Sales report"
    version: "1.0"
    config: {timeout_seconds: 600, fail_fast: true, max_concurrent_steps: 4,
             retry_attempts: 2, retry_delay_ms: 500}
    steps:
      - id: load
        name: "Load the data"
        step_type: read_file
        parameters: {path: sales.csv}
      - id: stats
        step_type: csv_process
        depends_on: [load]
        timeout_seconds: 30
        continue_on_error: false
        parameters: {text: "{{load.output.content}}", operation: statistics}

Field mapping: ``config.timeout_seconds`` -> ``Workflow.timeout_s``, ``fail_fast`` ->
``fail_fast``, ``max_concurrent_steps`` -> ``max_concurrency``, ``retry_attempts`` ->
``retry_attempts``, ``retry_delay_ms`` -> ``retry_delay_s`` (/1000); per step ``timeout_seconds``
-> ``timeout_s``, ``continue_on_error``, ``depends_on``, ``name``, and ``step_type`` +
``parameters`` -> ``kind``, ``target``, ``params`` through :data:`STEP_TYPES` (RustChain step
types onto aikit tools, with their parameter names renamed). aikit extensions: a top-level
``inputs`` table (defaults for ``{{input.NAME}}``, which RustChain's ``{{context.NAME}}`` reads
too), and per step ``retry_attempts`` / ``retry_delay_ms`` (override the mission's), ``when``
(``{ref, op, value}``) and ``loop`` (``{over | range, max_iterations}``). Any aikit tool name is
also a step type (its parameters are the tool's own).

RustChain types without an aikit tool behind them (``ssh_execute``, ``redis_set``, ...) are
rejected by name, with the list of supported types.

:func:`validate_mission` reports every problem at once, each with the step id and YAML line:
YAML and field errors, unknown step types, parameters the target tool's JSON Schema refuses,
what the engine's ``validate`` finds (duplicate ids, unknown dependencies, cycles with their path,
``{{...}}`` references that cannot resolve) and risky steps: commands, paths and URLs the security
policy would deny (named by rule), found without running anything. :func:`load_mission` returns
the :class:`Workflow` or raises :class:`~aikit_components.errors.ValidationError` listing them.
"""

from __future__ import annotations

from .checks import risky_steps
from .fields import CONFIG_FIELDS, MISSION_FIELDS, STEP_FIELDS
from .mapping import StepType
from .parse import Mission, parse_mission
from .step_types import (
    STEP_TYPES,
    UNSUPPORTED_STEP_TYPES,
    step_type_table,
    supported_step_types,
)
from .validate import load_mission, validate_mission

__all__ = [
    "CONFIG_FIELDS", "MISSION_FIELDS", "STEP_FIELDS", "STEP_TYPES", "UNSUPPORTED_STEP_TYPES", "Mission", "StepType",
    "load_mission", "parse_mission", "risky_steps", "step_type_table", "supported_step_types", "validate_mission",
]

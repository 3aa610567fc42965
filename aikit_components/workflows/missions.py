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

import dataclasses
import difflib
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import AikitError, NotFound, ValidationError
from .model import Condition, Loop, Step, Workflow

if TYPE_CHECKING:
    from ..security import SecurityPolicy
    from ..tools import ToolRegistry

__all__ = [
    "CONFIG_FIELDS", "MISSION_FIELDS", "STEP_FIELDS", "STEP_TYPES", "UNSUPPORTED_STEP_TYPES", "Mission", "StepType",
    "load_mission", "parse_mission", "risky_steps", "step_type_table", "supported_step_types", "validate_mission",
]

MISSION_FIELDS = ("version", "name", "description", "config", "steps", "inputs")
CONFIG_FIELDS = ("timeout_seconds", "fail_fast", "max_concurrent_steps", "retry_attempts", "retry_delay_ms")
STEP_FIELDS = ("id", "name", "step_type", "depends_on", "timeout_seconds", "continue_on_error", "parameters",
               # aikit extensions
               "description", "retry_attempts", "retry_delay_ms", "when", "loop")
CONDITION_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "truthy", "falsy")
_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.S)

# Parameter names that hold file system paths (any tool), checked against the policy's allowed paths.
PATH_PARAMETERS = ("path", "source", "destination", "root", "repo", "database", "archive", "cwd")


# ---------------------------------------------------------------------------------------------- step types
class _Drop:
    """A mission parameter accepted and ignored (it has no effect in aikit)."""


class _Refuse:
    """A mission parameter aikit cannot honour: a problem with a hint."""

    def __init__(self, hint: str) -> None:
        self.hint = hint


DROP = _Drop()


@dataclass
class Mapped:
    """A step type's parameters mapped onto an aikit step."""

    kind: str
    target: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # aikit parameter -> the mission's name for it
    problems: list[tuple[str | None, str]] = field(default_factory=list)  # (mission parameter, message)
    schema_tool: str | None = None  # validate params against this tool's schema


@dataclass(frozen=True)
class StepType:
    """How one mission ``step_type`` becomes an aikit step: ``kind`` and ``tool`` (the target),
    ``aliases`` (mission parameter -> tool parameter; ``DROP`` ignores one, ``_Refuse`` rejects
    it with a hint) or ``build`` (a function ``params -> Mapped`` for the non-trivial ones)."""

    name: str
    kind: str
    tool: str | None = None
    aliases: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    build: Callable[[dict[str, Any]], Mapped] | None = None

    def map(self, params: dict[str, Any]) -> Mapped:
        if self.build is not None:
            return self.build(params)
        mapped = Mapped(self.kind, self.tool, schema_tool=self.tool)
        _rename_into(mapped, params, self.aliases)
        return mapped

    def describe(self) -> str:
        """``write_file`` / ``kind llm`` / ..., for tables."""
        return self.summary or (self.tool if self.tool else f"kind {self.kind}")


def _rename_into(mapped: Mapped, params: dict[str, Any], aliases: Mapping[str, Any]) -> None:
    for key, value in params.items():
        new = aliases.get(key, key)
        if new is DROP:
            continue
        if isinstance(new, _Refuse):
            mapped.problems.append((key, new.hint))
            continue
        if new in mapped.params:
            mapped.problems.append((key, f"given twice (as {mapped.names[new]!r} and {key!r}); keep one"))
            continue
        mapped.params[new] = value
        mapped.names[new] = key


def _tool_step(name: str, tool: str, summary: str = "", **aliases: Any) -> StepType:
    return StepType(name, "tool", tool, aliases, summary)


_PATH = {"file": "path", "file_path": "path", "filename": "path"}
_SRC_DST = {"src": "source", "from": "source", "source_path": "source",
            "dest": "destination", "to": "destination", "destination_path": "destination", "target": "destination"}
_TEXT = {"content": "text", "data": "text", "input": "text", "file": "path", "file_path": "path", "input_file": "path"}


def _build_edit_file(params: dict[str, Any]) -> Mapped:
    """``{path, old, new}`` -> edit_file; ``{path, content, append: true}`` -> append_file;
    ``{path, content}`` -> write_file (replace the whole file)."""
    params = dict(params)
    backup = params.pop("backup", False)
    append = params.pop("append", False)
    if "old" in params or "new" in params:
        mapped = Mapped("tool", "edit_file", schema_tool="edit_file")
    elif append is True:
        mapped = Mapped("tool", "append_file", schema_tool="append_file")
    else:
        mapped = Mapped("tool", "write_file", schema_tool="write_file")
    if append not in (True, False):
        mapped.problems.append(("append", f"expected true or false, got {append!r}"))
    if backup not in (False, None):
        mapped.problems.append(("backup", "backups are not supported; add a copy_file step before this one"))
    _rename_into(mapped, params, _PATH)
    return mapped


def _build_file_search(params: dict[str, Any]) -> Mapped:
    """``{pattern, root}`` -> file_search (names by glob); with ``content`` / ``query`` -> grep
    (content search in the files matching ``pattern``)."""
    wanted = next((k for k in ("content", "query", "text", "regex_pattern") if k in params), None)
    dirs = {"directory": "root", "dir": "root", "path": "root", "max_results": "max_results"}
    if wanted is None:
        mapped = Mapped("tool", "file_search", schema_tool="file_search")
        _rename_into(mapped, params, dirs)
        return mapped
    mapped = Mapped("tool", "grep", schema_tool="grep")
    rest = dict(params)
    mapped.params["pattern"], mapped.names["pattern"] = rest.pop(wanted), wanted
    _rename_into(mapped, rest, {"pattern": "glob", "directory": "path", "dir": "path", "root": "path",
                                "case_insensitive": "ignore_case", "max_results": "max_matches"})
    return mapped


def _build_validate_schema(params: dict[str, Any]) -> Mapped:
    """``{data, schema}`` -> validate_schema; ``{file, schema_type: csv}`` -> csv_process validate."""
    params = dict(params)
    kind = params.pop("schema_type", None)
    if kind == "csv":
        mapped = Mapped("tool", "csv_process", schema_tool="csv_process")
        mapped.params["operation"] = "validate"
        _rename_into(mapped, params, {"file": "path", "file_path": "path", "input_file": "path", "content": "text"})
        return mapped
    mapped = Mapped("tool", "validate_schema", schema_tool="validate_schema")
    if kind not in (None, "json", "json_schema", "jsonschema"):
        mapped.problems.append(("schema_type", f"schema type {kind!r} is not supported (json or csv)"))
    _rename_into(mapped, params, {"value": "data", "instance": "data", "json_schema": "schema",
                                  "file": _Refuse("validate_schema checks `data`: parse the file in a parse_json "
                                                  "step and pass data: \"{{that_step.output}}\"")})
    return mapped


def _argv(command: Any, args: Any) -> tuple[list[Any] | None, list[tuple[str | None, str]]]:
    problems: list[tuple[str | None, str]] = []
    if isinstance(command, list):
        argv = list(command)
    elif isinstance(command, str) and command.strip():
        if args is None and not _TEMPLATE.search(command) and len(command.split()) > 1:
            try:
                argv = shlex.split(command)
            except ValueError as exc:
                return None, [("command", f"cannot split {command!r} into arguments: {exc}")]
        else:
            argv = [command]
    else:
        return None, [("command", "required: the program to run (a string) or an argv list")]
    if args is not None:
        if not isinstance(args, list):
            problems.append(("args", f"expected a list of arguments, got {type(args).__name__}"))
        else:
            argv += args
    bad = [a for a in argv if not isinstance(a, (str, int, float)) or isinstance(a, bool)]
    if bad:
        problems.append(("args", f"arguments must be strings, got {bad[0]!r}"))
    return [a if isinstance(a, str) else str(a) for a in argv], problems


def _build_command(params: dict[str, Any]) -> Mapped:
    """``{command, args, working_dir, timeout, env, stdin}`` -> kind command (no shell)."""
    params = dict(params)
    mapped = Mapped("command", "run_process", schema_tool="run_process")
    argv, problems = _argv(params.pop("command", None), params.pop("args", None))
    mapped.problems += problems
    if argv is not None:
        mapped.params["command"], mapped.names["command"] = argv, "command"
    _rename_into(mapped, params, {"working_dir": "cwd", "working_directory": "cwd", "dir": "cwd",
                                  "timeout": "timeout_s", "timeout_seconds": "timeout_s", "input": "stdin",
                                  "shell": _Refuse("commands run without a shell; give the program and its args")})
    return mapped


def _build_http(params: dict[str, Any]) -> Mapped:
    """``{url, method, headers, body, timeout}`` -> http_request (a table body is sent as JSON)."""
    params = dict(params)
    mapped = Mapped("tool", "http_request", schema_tool="http_request")
    if isinstance(params.get("body"), (dict, list)) and "json" not in params:
        params["json"] = params.pop("body")
    _rename_into(mapped, params, {"timeout": "timeout_s", "timeout_seconds": "timeout_s", "query": "params",
                                  "query_params": "params", "data": "body", "retry": "retries"})
    return mapped


_REMOTE_DB = re.compile(r"^(postgres(ql)?|mysql|mariadb|redis|mongodb|mssql|oracle)(\+\w+)?://", re.I)


def _build_sql(params: dict[str, Any]) -> Mapped:
    """``{database | connection, query, parameters}`` -> sql_query (SQLite database files)."""
    params = dict(params)
    mapped = Mapped("tool", "sql_query", schema_tool="sql_query")
    fmt = params.pop("output_format", "json")
    if fmt != "json":
        mapped.problems.append(("output_format", f"only json output is supported, got {fmt!r}"))
    _rename_into(mapped, params, {"connection": "database", "db": "database", "database_path": "database",
                                  "database_url": "database", "sql": "query", "statement": "query",
                                  "parameters": "params", "args": "params", "timeout": "timeout_s"})
    database = mapped.params.get("database")
    if isinstance(database, str):
        if database.lower().startswith("sqlite:///"):
            mapped.params["database"] = database[len("sqlite:///"):]
        elif _REMOTE_DB.match(database):
            mapped.problems.append((mapped.names.get("database"), f"{database.split(':')[0]} servers are not supported: "
                                    "sql_query runs on SQLite database files (give a file path)"))
    return mapped


def _model_name(params: dict[str, Any], mapped: Mapped) -> None:
    provider, model = params.pop("provider", None), params.pop("model", None)
    if model is not None and not isinstance(model, str):
        mapped.problems.append(("model", f"expected a model name, got {model!r}"))
        return
    if provider is not None and not isinstance(provider, str):
        mapped.problems.append(("provider", f"expected a provider name, got {provider!r}"))
        return
    if provider and not model:
        mapped.problems.append(("provider", f"give `model` too (the model of provider {provider!r} to use, e.g. "
                                "gpt-4o-mini), or `model: default` without a provider"))
        return
    if model:
        mapped.params["model"] = f"{provider}/{model}" if provider and "/" not in model else model
        mapped.names["model"] = "model"


_LLM_ALIASES = {"system_message": "system", "system_prompt": "system", "max_output_tokens": "max_tokens"}
_LLM_PARAMS = {"prompt": str, "model": str, "system": str, "temperature": (int, float), "max_tokens": int}


def _check_llm_params(mapped: Mapped, allowed: dict[str, Any]) -> None:
    for key, value in list(mapped.params.items()):
        name = mapped.names.get(key, key)
        kind = allowed.get(key)
        if kind is None:
            mapped.problems.append((name, f"unknown parameter (known: {', '.join(sorted(allowed))})"))
            del mapped.params[key]
        elif isinstance(value, str) and _TEMPLATE.search(value):
            continue
        elif not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            mapped.problems.append((name, f"expected {_kind_name(kind)}, got {_kind_name(type(value))}"))
    temperature = mapped.params.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and not 0 <= temperature <= 2:
        mapped.problems.append(("temperature", f"must be between 0 and 2, got {temperature}"))
    for key in ("max_tokens", "max_steps"):
        value = mapped.params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            mapped.problems.append((mapped.names.get(key, key), f"must be at least 1, got {value}"))


def _kind_name(kind: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a table", type(None): "null"}
    if isinstance(kind, tuple):
        return "a number" if set(kind) == {int, float} else " or ".join(_kind_name(k) for k in kind)
    return names.get(kind, kind.__name__ if isinstance(kind, type) else str(kind))


def _build_llm(params: dict[str, Any]) -> Mapped:
    """``{prompt, provider, model, temperature, max_tokens, system_message}`` -> kind llm."""
    params = dict(params)
    mapped = Mapped("llm")
    _model_name(params, mapped)
    _rename_into(mapped, params, _LLM_ALIASES)
    if "prompt" not in mapped.params:
        mapped.problems.append(("prompt", "required: the text to send to the model"))
    _check_llm_params(mapped, _LLM_PARAMS)
    return mapped


_AGENT_PARAMS = {"name": str, "model": str, "system": str, "tools": list, "max_steps": int,
                 "temperature": (int, float), "max_tokens": int, "input": (str, dict, list), "agent": str}


def _build_agent(params: dict[str, Any]) -> Mapped:
    """``{name, objective, model, tools, max_iterations, system}`` -> kind agent: an AgentSpec
    table as target, the objective as ``params.input``. ``{agent: NAME, objective}`` runs an
    agent defined elsewhere (in Lua) by name."""
    params = dict(params)
    mapped = Mapped("agent")
    _model_name(params, mapped)
    _rename_into(mapped, params, {"objective": "input", "task": "input", "goal": "input", "prompt": "input",
                                  "max_iterations": "max_steps", "instructions": "system",
                                  "system_message": "system", "system_prompt": "system", "verbose": DROP})
    _check_llm_params(mapped, _AGENT_PARAMS)
    if "input" not in mapped.params:
        mapped.problems.append(("objective", "required: what the agent should do"))
    tools = mapped.params.get("tools")
    if isinstance(tools, list) and not all(isinstance(t, str) for t in tools):
        mapped.problems.append(("tools", "expected a list of tool names"))
    agent_input = mapped.params.pop("input", None)
    named = mapped.params.pop("agent", None)
    if named is not None:
        if mapped.params:
            mapped.problems.append(("agent", "an agent named by `agent` is defined elsewhere; give only `objective` "
                                    f"(not {', '.join(mapped.names.get(k, k) for k in mapped.params)})"))
        mapped.target = named
    else:
        spec = dict(mapped.params)
        spec.setdefault("name", "agent")
        mapped.target = spec
    mapped.params = {"input": agent_input}
    mapped.names["input"] = "objective"
    return mapped


def _build_tool(params: dict[str, Any]) -> Mapped:
    """``{name, args}`` -> any aikit tool by name."""
    params = dict(params)
    name = params.pop("name", params.pop("tool", None))
    args = params.pop("args", params.pop("arguments", params.pop("parameters", {})))
    mapped = Mapped("tool", name, schema_tool=name if isinstance(name, str) else None)
    if not isinstance(name, str) or not name:
        mapped.problems.append(("name", "required: the aikit tool to call (`aikit tools list` shows them)"))
    if not isinstance(args, dict):
        mapped.problems.append(("args", f"expected a table of the tool's arguments, got {type(args).__name__}"))
        args = {}
    for key in params:
        mapped.problems.append((key, "unknown parameter (a tool step takes name and args)"))
    mapped.params = dict(args)
    return mapped


def _build_git_add(params: dict[str, Any]) -> Mapped:
    params = dict(params)
    for key in ("files", "path", "file"):
        if key in params and "paths" not in params:
            value = params.pop(key)
            params["paths"] = [value] if isinstance(value, str) else value
    mapped = Mapped("tool", "git_add", schema_tool="git_add")
    _rename_into(mapped, params, {"repository": "repo", "repo_path": "repo", "directory": "repo"})
    return mapped


def _build_noop(params: dict[str, Any]) -> Mapped:
    return Mapped("noop", params=dict(params))


def _build_chain(params: dict[str, Any]) -> Mapped:
    """``{mission: other.yaml, inputs: {...}}`` -> kind workflow (loaded by the parser)."""
    params = dict(params)
    mapped = Mapped("workflow")
    source = next((params.pop(k) for k in ("mission", "file", "path", "workflow") if k in params), None)
    inputs = params.pop("inputs", {})
    if not isinstance(source, str) or not source:
        mapped.problems.append(("mission", "required: the path of the mission file to run"))
    if not isinstance(inputs, dict):
        mapped.problems.append(("inputs", "expected a table of inputs for the nested mission"))
        inputs = {}
    for key in params:
        mapped.problems.append((key, "unknown parameter (a chain step takes mission and inputs)"))
    mapped.target, mapped.params = source, dict(inputs)
    return mapped


_GIT_REPO = {"repository": "repo", "repo_path": "repo", "directory": "repo"}

#: RustChain step types -> aikit steps (see the module docstring and docs/missions.md).
STEP_TYPES: dict[str, StepType] = {t.name: t for t in [
    # file operations
    _tool_step("create_file", "write_file", **_PATH, mode=_Refuse("file permissions are not supported; remove `mode`")),
    StepType("edit_file", "tool", "edit_file", summary="edit_file {old,new} | write_file {content} | "
             "append_file {content, append: true}", build=_build_edit_file),
    _tool_step("read_file", "read_file", **_PATH),
    _tool_step("delete_file", "delete_file", **_PATH),
    _tool_step("copy_file", "copy_file", **_SRC_DST),
    _tool_step("move_file", "move_file", **_SRC_DST),
    _tool_step("list_directory", "list_directory", directory="path", dir="path"),
    StepType("file_search", "tool", "file_search", summary="file_search {pattern} | grep {content|query}",
             build=_build_file_search),
    # data processing
    _tool_step("parse_json", "parse_json", **_TEXT, json="text"),
    _tool_step("parse_yaml", "parse_yaml", **_TEXT, yaml="text"),
    _tool_step("parse_xml", "parse_xml", **_TEXT, xml="text"),
    StepType("validate_schema", "tool", "validate_schema", summary="validate_schema | csv_process validate "
             "(schema_type: csv)", build=_build_validate_schema),
    _tool_step("csv_process", "csv_process", input_file="path", file="path", file_path="path", content="text",
               data="text", output_file=_Refuse("csv_process returns its result; write it with a create_file step")),
    # git
    _tool_step("git_status", "git_status", path="repo", **_GIT_REPO),
    _tool_step("git_diff", "git_diff", file="path", **_GIT_REPO),
    _tool_step("git_log", "git_log", path="repo", limit="max_count", count="max_count", **_GIT_REPO),
    StepType("git_add", "tool", "git_add", build=_build_git_add),
    _tool_step("git_commit", "git_commit", path="repo", **_GIT_REPO),
    # system
    StepType("command", "command", "run_process", summary="kind command (run_process, no shell)",
             build=_build_command),
    _tool_step("compress", "compress", path="source", input="source", input_path="source", output="destination",
               output_path="destination", archive="destination", **_SRC_DST),
    _tool_step("monitor_resources", "system_info", summary="system_info"),
    # database
    StepType("sql_query", "tool", "sql_query", summary="sql_query (SQLite files)", build=_build_sql),
    # network
    StepType("http", "tool", "http_request", summary="http_request", build=_build_http),
    # AI
    StepType("llm", "llm", summary="kind llm (provider/model)", build=_build_llm),
    StepType("agent", "agent", summary="kind agent (AgentSpec from the parameters)", build=_build_agent),
    StepType("chain", "workflow", summary="kind workflow (a nested mission file)", build=_build_chain),
    # control flow
    StepType("noop", "noop", summary="kind noop", build=_build_noop),
    StepType("tool", "tool", summary="any aikit tool {name, args}", build=_build_tool),
]}

#: RustChain step types with no aikit tool behind them, with what to use instead.
UNSUPPORTED_STEP_TYPES: dict[str, str] = {
    "compile_code": "run the compiler in a `command` step",
    "run_tests": "run the test runner in a `command` step",
    "format_code": "run the formatter in a `command` step",
    "lint_code": "run the linter in a `command` step",
    "extract_functions": "",
    "generate_docs": "",
    "git_branch": "run git in a `command` step",
    "git_merge": "run git in a `command` step",
    "process_start": "a `command` step runs a program to completion",
    "process_kill": "",
    "service_health": "use an `http` step",
    "redis_set": "", "redis_get": "", "db_backup": "", "db_migrate": "",
    "websocket_connect": "", "ftp_upload": "", "ftp_download": "", "ssh_execute": "",
    "ping_host": "use an `http` step",
    "generate_embedding": "", "similarity_search": "", "model_inference": "use an `llm` step",
    "rag_query": "", "rag_add": "",
}


def supported_step_types() -> list[str]:
    return sorted(STEP_TYPES)


def step_type_table() -> list[tuple[str, str]]:
    """``(step_type, what it runs)`` rows for docs and ``aikit mission types``."""
    rows = [(name, t.describe()) for name, t in STEP_TYPES.items()]
    rows += [(name, "not supported" + (f": {hint}" if hint else "")) for name, hint in UNSUPPORTED_STEP_TYPES.items()]
    return rows


# ---------------------------------------------------------------------------------------------- parsing
@dataclass
class Mission:
    """A parsed mission: the workflow, every problem found while parsing and mapping, and
    where each step came from."""

    workflow: Workflow
    problems: list[str] = field(default_factory=list)
    step_types: dict[str, str] = field(default_factory=dict)  # step id -> its mission step_type
    lines: dict[str, int] = field(default_factory=dict)  # step id -> YAML line
    param_lines: dict[str, dict[str, int]] = field(default_factory=dict)  # step id -> parameter -> line
    mapped: dict[str, Mapped] = field(default_factory=dict)  # step id -> its mapping (first step with that id)


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[int, int, str]] = []  # (line or 0, order, text)

    def add(self, line: int | None, text: str, step: str | None = None) -> None:
        where = f"step {step!r}" if step is not None else ""
        if line:
            where = f"{where} (line {line})" if where else f"line {line}"
        self.items.append((line or 0, len(self.items), f"{where}: {text}" if where else text))

    def sorted(self) -> list[str]:
        return [text for _, _, text in sorted(self.items)]


def _child(node: Any, key: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _key_line(node: Any, key: str) -> int | None:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k.start_mark.line + 1
    return None


def _line(node: Any) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _read_source(source: str | os.PathLike[str]) -> tuple[str, str | None]:
    """(text, path) for a path or YAML text."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and (source.endswith((".yaml", ".yml")) or os.path.isfile(source))):
        path = Path(source)
        try:
            return path.read_text(encoding="utf-8"), str(path.resolve())
        except FileNotFoundError:
            raise NotFound(f"mission file {str(path)!r} does not exist", details={"path": str(path)}) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AikitError(f"cannot read mission file {str(path)!r}: {exc}", code="io_error") from None
    if not isinstance(source, str):
        raise TypeError(f"expected a mission path or YAML text, got {type(source).__name__}")
    return source, None


def _compose(text: str, problems: _Problems) -> tuple[Any, Any]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return node, data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) or str(exc)
        problems.add(mark.line + 1 if mark else None, f"invalid YAML: {what}")
        return None, None
    finally:
        loader.dispose()


def _number(value: Any, *, integer: bool = False, minimum: float = 0, exclusive: bool = False) -> str | None:
    """A problem with a numeric field, or None."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok_type or isinstance(value, bool):
        return f"expected {'an integer' if integer else 'a number'}, got {value!r}"
    if value < minimum or (exclusive and value == minimum):
        return f"must be {'greater than' if exclusive else 'at least'} {minimum:g}, got {value!r}"
    return None


def _builtin_registry() -> "ToolRegistry":
    global _REGISTRY
    if _REGISTRY is None:
        from ..tools import default_registry

        _REGISTRY = default_registry(plugins=False)
    return _REGISTRY


_REGISTRY: "ToolRegistry | None" = None


def parse_mission(source: str | os.PathLike[str], *, registry: "ToolRegistry | None" = None,
                  _stack: tuple[str, ...] = ()) -> Mission:
    """Parse a mission (a path or YAML text) into a :class:`Mission`: the workflow plus every
    problem found in its fields, step types and parameters (against the tools' JSON Schemas of
    ``registry``, default the built-in tools). Raises only when the file cannot be read."""
    text, path = _read_source(source)
    registry = registry if registry is not None else _builtin_registry()
    problems = _Problems()
    root, data = _compose(text, problems)
    workflow = Workflow(name=Path(path).stem if path else "mission", source=path)
    mission = Mission(workflow)
    if root is None and data is None:
        if not problems.items:
            problems.add(None, "the mission is empty (expected name, version and steps)")
        mission.problems = problems.sorted()
        return mission
    if not isinstance(data, dict):
        problems.add(_line(root), f"a mission is a table (name, version, steps), got {type(data).__name__}")
        mission.problems = problems.sorted()
        return mission

    for key in data:
        if key not in MISSION_FIELDS:
            problems.add(_key_line(root, str(key)), _unknown_field("mission field", key, MISSION_FIELDS))
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add(_line(_child(root, "name")) or 1, "name: required, a non-empty string")
    else:
        workflow.name = name
    version = data.get("version", "1.0")
    if not isinstance(version, (str, int, float)) or isinstance(version, bool):
        problems.add(_line(_child(root, "version")), f"version: expected a string like \"1.0\", got {version!r}")
    else:
        workflow.version = str(version)
    description = data.get("description")
    if description is not None:
        if isinstance(description, str):
            workflow.description = description
        else:
            problems.add(_line(_child(root, "description")), "description: expected a string")
    inputs = data.get("inputs")
    if inputs is not None:
        if isinstance(inputs, dict) and all(isinstance(k, str) for k in inputs):
            workflow.inputs = dict(inputs)
        else:
            problems.add(_line(_child(root, "inputs")), "inputs: expected a table of input names and default values")
    _parse_config(data.get("config"), _child(root, "config"), workflow, problems)

    steps_node = _child(root, "steps")
    steps = data.get("steps")
    if steps is None:
        problems.add(None, "steps: required, a list of steps")
    elif not isinstance(steps, list):
        problems.add(_line(steps_node), f"steps: expected a list of steps, got {type(steps).__name__}")
    else:
        if not steps:
            problems.add(_line(steps_node), "steps: the mission has no steps")
        for index, item in enumerate(steps):
            node = steps_node.value[index] if isinstance(steps_node, yaml.SequenceNode) else None
            step = _parse_step(item, node, index, mission, registry, problems, path, _stack)
            if step is not None:
                workflow.steps.append(step)
    mission.problems = problems.sorted()
    return mission


def _unknown_field(what: str, key: Any, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} {key!r} ({hint}known: {', '.join(known)})"


def _parse_config(config: Any, node: Any, workflow: Workflow, problems: _Problems) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        problems.add(_line(node), f"config: expected a table ({', '.join(CONFIG_FIELDS)})")
        return
    for key, value in config.items():
        line = _key_line(node, str(key))
        if key not in CONFIG_FIELDS:
            problems.add(line, _unknown_field("config field", key, CONFIG_FIELDS))
            continue
        if value is None:
            continue
        if key == "fail_fast":
            if isinstance(value, bool):
                workflow.fail_fast = value
            else:
                problems.add(line, f"config.fail_fast: expected true or false, got {value!r}")
            continue
        integer = key in ("max_concurrent_steps", "retry_attempts")
        minimum = 1 if key == "max_concurrent_steps" else 0
        problem = _number(value, integer=integer, minimum=minimum, exclusive=key == "timeout_seconds")
        if problem:
            problems.add(line, f"config.{key}: {problem}")
        elif key == "timeout_seconds":
            workflow.timeout_s = float(value)
        elif key == "max_concurrent_steps":
            workflow.max_concurrency = int(value)
        elif key == "retry_attempts":
            workflow.retry_attempts = int(value)
        else:
            workflow.retry_delay_s = value / 1000.0


def _parse_step(item: Any, node: Any, index: int, mission: Mission, registry: "ToolRegistry",
                problems: _Problems, path: str | None, stack: tuple[str, ...]) -> Step | None:
    line = _line(node)
    if not isinstance(item, dict):
        problems.add(line, f"steps[{index + 1}]: a step is a table (id, name, step_type, parameters), "
                           f"got {type(item).__name__}")
        return None
    sid = item.get("id")
    if not isinstance(sid, (str, int)) or isinstance(sid, bool) or not str(sid).strip():
        problems.add(line, f"steps[{index + 1}]: id: required, a non-empty string")
        sid = f"#{index + 1}"
    sid = str(sid)
    step = Step(id=sid, name=sid, source_line=line)

    def report(key: str | None, text: str) -> None:
        problems.add(_key_line(node, key) if key else line, text, sid)

    first = sid not in mission.lines
    if first:
        mission.lines[sid] = line or 0
    for key in item:
        if key not in STEP_FIELDS:
            report(str(key), _unknown_field("step field", key, STEP_FIELDS))
    name = item.get("name")
    if name is not None:
        if isinstance(name, str):
            step.name = name
        else:
            report("name", f"name: expected a string, got {name!r}")
    depends = item.get("depends_on")
    if depends is not None:
        if isinstance(depends, str):
            depends = [depends]
        if isinstance(depends, list) and all(isinstance(d, (str, int)) and not isinstance(d, bool) for d in depends):
            step.depends_on = [str(d) for d in depends]
        else:
            report("depends_on", "depends_on: expected a list of step ids")
    timeout = item.get("timeout_seconds")
    if timeout is not None:
        problem = _number(timeout, exclusive=True)
        if problem:
            report("timeout_seconds", f"timeout_seconds: {problem}")
        else:
            step.timeout_s = float(timeout)
    coe = item.get("continue_on_error")
    if coe is not None:
        if isinstance(coe, bool):
            step.continue_on_error = coe
        else:
            report("continue_on_error", f"continue_on_error: expected true or false, got {coe!r}")
    retries = item.get("retry_attempts")
    if retries is not None:
        problem = _number(retries, integer=True)
        if problem:
            report("retry_attempts", f"retry_attempts: {problem}")
        else:
            step.retries = int(retries)
    delay = item.get("retry_delay_ms")
    if delay is not None:
        problem = _number(delay)
        if problem:
            report("retry_delay_ms", f"retry_delay_ms: {problem}")
        else:
            step.retry_delay_s = delay / 1000.0
    if item.get("when") is not None:
        step.when = _parse_when(item["when"], lambda text: report("when", text))
    if item.get("loop") is not None:
        step.loop = _parse_loop(item["loop"], lambda text: report("loop", text))

    params = item.get("parameters", {})
    params_node = _child(node, "parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        report("parameters", f"parameters: expected a table, got {type(params).__name__}")
        params = {}
    param_lines = {str(k): _key_line(params_node, str(k)) or line or 0 for k in params}
    if first:
        mission.param_lines[sid] = param_lines
    params = {str(k): v for k, v in params.items()}

    step_type = item.get("step_type")
    if not isinstance(step_type, str) or not step_type:
        report("step_type" if "step_type" in item else None,
               "step_type: required (one of " + ", ".join(supported_step_types()) + ", or an aikit tool name)")
        return step
    if first:
        mission.step_types[sid] = step_type
    kind = STEP_TYPES.get(step_type)
    if kind is None and step_type in registry:
        kind = StepType(step_type, "tool", step_type)
    if kind is None:
        report("step_type", _unknown_step_type(step_type))
        return step
    mapped = kind.map(params)
    if first:
        mission.mapped[sid] = mapped
    step.kind, step.target, step.params = mapped.kind, mapped.target, mapped.params

    def report_param(name: str | None, text: str) -> None:
        at = param_lines.get(name) if name else None
        problems.add(at or line, f"parameters.{name}: {text}" if name else text, sid)

    for pname, text in mapped.problems:
        report_param(pname, text)
    if mapped.schema_tool:
        _check_tool_params(mapped, registry, report_param)
    if mapped.kind == "workflow" and isinstance(mapped.target, str) and mapped.target:
        _load_chain(step, mapped, path, registry, stack, report_param)
    return step


def _unknown_step_type(step_type: str) -> str:
    if step_type in UNSUPPORTED_STEP_TYPES:
        hint = UNSUPPORTED_STEP_TYPES[step_type]
        return (f"step type {step_type!r} is not supported by aikit (no tool for it{'; ' + hint if hint else ''}); "
                f"supported: {', '.join(supported_step_types())}")
    close = difflib.get_close_matches(step_type, list(STEP_TYPES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"unknown step type {step_type!r} ({hint}supported: {', '.join(supported_step_types())}; "
            "or an aikit tool name, see `aikit tools list`)")


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return False


_FIELD = re.compile(r"^([^\s\[\].:]+)")


def _check_tool_params(mapped: Mapped, registry: "ToolRegistry",
                       report: Callable[[str | None, str], None]) -> None:
    name = mapped.schema_tool
    if name not in registry:
        close = difflib.get_close_matches(str(name), [t.name for t in registry.list()], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `aikit tools list` shows what exists"
        report(None, f"no tool named {name!r}{hint}")
        return
    item = registry.get(name)
    params = dict(mapped.params)
    if mapped.kind == "command" and "check" in params:  # the engine's own flag: accept non-zero exits
        check = params.pop("check")
        if not isinstance(check, bool) and not _has_template(check):
            report(mapped.names.get("check", "check"), f"expected true or false, got {check!r}")
    templated = {k for k, v in params.items() if _has_template(v)}
    for problem in item.validate(params):
        match = _FIELD.match(problem)
        key = match.group(1) if match else None
        if key in templated:
            continue  # known only when the step runs
        shown = mapped.names.get(key, key) if key else None
        if key and shown != key:
            problem = shown + problem[len(key):]
        if shown and problem.startswith(shown):
            report(shown, problem[len(shown):].lstrip(": ").strip() or problem)
        else:
            report(None, f"parameters: {problem}")


def _parse_when(value: Any, report: Callable[[str], None]) -> Condition | None:
    if isinstance(value, str):
        return Condition(ref=value, op="truthy")
    if not isinstance(value, dict) or "ref" not in value:
        report("when: expected a reference (\"{{steps.a.output.ok}}\") or a table {ref, op, value}")
        return None
    op = value.get("op", "truthy")
    if op not in CONDITION_OPS:
        report(f"when.op: must be one of {', '.join(CONDITION_OPS)}, got {op!r}")
        return None
    extra = set(value) - {"ref", "op", "value"}
    if extra:
        report(f"when: unknown field(s) {', '.join(sorted(map(str, extra)))} (known: ref, op, value)")
    return Condition(ref=value["ref"], op=op, value=value.get("value"))


def _parse_loop(value: Any, report: Callable[[str], None]) -> Loop | None:
    if not isinstance(value, dict):
        report("loop: expected a table {over | range, max_iterations}")
        return None
    extra = set(value) - {"over", "range", "max_iterations"}
    if extra:
        report(f"loop: unknown field(s) {', '.join(sorted(map(str, extra)))} (known: over, range, max_iterations)")
    loop = Loop(over=value.get("over"))
    rng = value.get("range")
    if rng is not None:
        if (isinstance(rng, list) and len(rng) in (2, 3)
                and all(isinstance(n, int) and not isinstance(n, bool) for n in rng)):
            loop.range = list(rng)
        else:
            report("loop.range: expected [start, stop] or [start, stop, step] (integers)")
    if loop.over is None and loop.range is None:
        report("loop: give `over` (a list or a {{...}} reference) or `range`")
    limit = value.get("max_iterations")
    if limit is not None:
        problem = _number(limit, integer=True, minimum=1)
        if problem:
            report(f"loop.max_iterations: {problem}")
        else:
            loop.max_iterations = int(limit)
    return loop


def _load_chain(step: Step, mapped: Mapped, path: str | None, registry: "ToolRegistry",
                stack: tuple[str, ...], report: Callable[[str | None, str], None]) -> None:
    base = Path(path).parent if path else Path.cwd()
    target = (base / mapped.target).resolve()
    name = mapped.names.get("mission", "mission")
    if str(target) in stack or str(target) == path:
        chain = " -> ".join([*stack, path or "", str(target)])
        report(name, f"missions include each other: {chain}")
        return
    try:
        nested = parse_mission(target, registry=registry, _stack=(*stack, path or "<text>"))
    except AikitError as exc:
        report(name, exc.message)
        return
    for problem in nested.problems:
        report(name, f"in {mapped.target}: {problem}")
    step.workflow = nested.workflow


# ---------------------------------------------------------------------------------------------- checks
def risky_steps(mission: Mission, policy: "SecurityPolicy", registry: "ToolRegistry | None" = None,
                inputs: dict[str, Any] | None = None) -> list[str]:
    """Problems for steps the security policy would refuse (commands, paths, URLs), found
    without running anything. ``{{input.*}}`` references are filled from the mission's inputs
    (and ``inputs``); values depending on other steps are known only at run time: skipped."""
    registry = registry if registry is not None else _builtin_registry()
    problems = _Problems()
    known = {**mission.workflow.inputs, **(inputs or {})}
    for step in mission.workflow.steps:
        mapped = mission.mapped.get(step.id)
        if mapped is None or mission.lines.get(step.id) != (step.source_line or 0):
            continue  # unmapped, or a duplicate id (reported elsewhere)
        param_lines = mission.param_lines.get(step.id, {})

        def report(key: str | None, text: str, step: Step = step, mapped: Mapped = mapped,
                   param_lines: dict[str, int] = param_lines) -> None:
            shown = mapped.names.get(key, key) if key else None
            line = param_lines.get(shown) if shown else None
            problems.add(line or step.source_line, f"parameters.{shown}: {text}" if shown else text, step.id)

        for key, text in _policy_problems(_with_inputs(step, known), policy, registry):
            report(key, text)
    return problems.sorted()


def _with_inputs(step: Step, inputs: dict[str, Any]) -> Step:
    """A copy of ``step`` whose parameters have their ``{{input.*}}`` references filled in where
    nothing else is referenced (the rest stays templated)."""
    from . import templates

    params: dict[str, Any] = {}
    for key, value in (step.params if isinstance(step.params, dict) else {}).items():
        if _has_template(value):
            try:
                template = templates.compile(value, f"params.{key}")
                if not template.problems and all(ref.root == "input" for ref in template.refs):
                    value = template.resolve(templates.TemplateContext(inputs=inputs, steps={}))
            except AikitError:
                pass
        params[key] = value
    return dataclasses.replace(step, params=params)


def _denied(exc: AikitError) -> str:
    rule = exc.details.get("rule") if isinstance(exc.details, dict) else None
    prefix = f"denied by the security policy (rule {rule})" if rule else f"refused ({exc.code})"
    return f"{prefix}: {exc.message}"


def _policy_problems(step: Step, policy: "SecurityPolicy", registry: "ToolRegistry") -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    writes = (step.kind == "tool" and isinstance(step.target, str) and step.target in registry
              and registry.get(step.target).security == "write")
    params = step.params if isinstance(step.params, dict) else {}
    argv = None
    if step.kind == "command" or (step.kind == "tool" and step.target == "run_process"):
        argv = params.get("command")
    if isinstance(argv, list) and argv and isinstance(argv[0], str) and "{{" not in argv[0]:
        # Path-like arguments are checked against the step's cwd, so only when that is known now and
        # allowed (a bad cwd is reported on its own below); templated ones are checked when it runs.
        cwd = params.get("cwd")
        known = cwd is None or (isinstance(cwd, str) and bool(cwd) and not _has_template(cwd)
                                and not _check_path(policy, "cwd", cwd, False))
        args = [a if isinstance(a, str) else str(a) for a in argv[1:]] if known else []
        try:
            policy.check_command([argv[0], *(a for a in args if not _has_template(a))], cwd if known else None)
        except AikitError as exc:
            out.append(("command", _denied(exc)))
    if step.kind in ("tool", "command"):
        for key in PATH_PARAMETERS:
            value = params.get(key)
            if isinstance(value, str) and value and not _has_template(value):
                out += _check_path(policy, key, value, writes and key != "source")
        paths = params.get("paths")
        if isinstance(paths, list):
            for value in paths:
                if isinstance(value, str) and value and not _has_template(value):
                    out += _check_path(policy, "paths", value, writes)
        url = params.get("url")
        if step.target in ("http_request", "fetch_page") and isinstance(url, str) and not _has_template(url):
            try:
                policy.check_url(url)
            except AikitError as exc:
                out.append(("url", _denied(exc)))
    if step.kind == "workflow" and step.workflow is not None:
        for sub in step.workflow.steps:
            for key, text in _policy_problems(sub, policy, registry):
                out.append((None, f"nested step {sub.id!r}: {f'parameters.{key}: ' if key else ''}{text}"))
    return out


def _check_path(policy: "SecurityPolicy", key: str, value: str, write: bool) -> list[tuple[str | None, str]]:
    try:
        policy.check_path(value, write=write)
    except AikitError as exc:
        return [(key, _denied(exc))]
    return []


def validate_mission(source: "str | os.PathLike[str] | Mission", *, components: Any = None,
                     policy: "SecurityPolicy | None" = None, registry: "ToolRegistry | None" = None,
                     inputs: dict[str, Any] | None = None) -> list[str]:
    """Every problem of a mission at once (empty: it can run): parse and field errors, step
    types, parameters, the engine's checks (ids, dependencies, cycles, ``{{...}}`` references)
    and risky steps under ``policy`` (default: the components' policy, else the default one)."""
    if registry is None and components is not None:
        registry = components.tools
    mission = source if isinstance(source, Mission) else parse_mission(source, registry=registry)
    problems = list(mission.problems)
    workflow = mission.workflow
    if workflow.steps:
        from . import engine

        for problem in engine.validate(workflow, components=components, inputs=inputs):
            if not _reported(problem, mission):
                problems.append(_with_line(problem, mission))
    if policy is None:
        policy = components.policy if components is not None else _default_policy()
    problems += risky_steps(mission, policy, registry, inputs)
    return _by_line(_dedupe(problems))


_ENGINE_STEP = re.compile(r"^step '(?P<id>[^']+)'(?: \(line (?P<line>\d+)\))?: (?:params\.(?P<param>[^\s.:\[]+))?")
_CYCLE = re.compile(r"^dependency cycle: (?P<first>[^\s]+) -> ")


def _with_line(problem: str, mission: Mission) -> str:
    """An engine problem in the mission's terms: the YAML line of the step (or of the parameter
    it names) and the parameter's name as written in the mission (``parameters.input_file``
    rather than ``params.path``); a cycle gets the line of its first step."""
    match = _ENGINE_STEP.match(problem)
    if match:
        sid, param = match.group("id"), match.group("param")
        line = mission.lines.get(sid)
        if match.group("line") and int(match.group("line")) != line:
            return problem  # a later step with a duplicate id: the engine's line is the right one
        rest = problem[match.end():]
        if param is not None:
            mapped = mission.mapped.get(sid)
            shown = mapped.names.get(param, param) if mapped is not None else param
            line = mission.param_lines.get(sid, {}).get(shown) or line
            rest = f"parameters.{shown}{rest}"
        where = f" (line {line})" if line else ""
        return f"step {sid!r}{where}: {rest}"
    match = _CYCLE.match(problem)
    if match and match.group("first") in mission.lines:
        return f"line {mission.lines[match.group('first')]}: {problem}"
    return problem


_ANY_LINE = re.compile(r"^(?:step '[^']*' )?\(?line (\d+)\)?")


def _by_line(problems: list[str]) -> list[str]:
    """Problems in file order (those without a line first), stable."""
    def key(text: str) -> int:
        match = _ANY_LINE.match(text)
        return int(match.group(1)) if match else 0
    return sorted(problems, key=key)


# What the engine says about a step's parameters that the mission parser has already said, with
# the mission's own parameter names and YAML lines.
_ALREADY_CHECKED = re.compile(r"^step '([^']+)'[^:]*: (tool '[^']+' (needs|has no) parameter |no tool named |"
                              r"an llm step needs params\.prompt|an agent step needs params\.input|"
                              r"a command step needs params\.command|params\.command must be)")


def _reported(problem: str, mission: Mission) -> bool:
    match = _ALREADY_CHECKED.match(problem)
    return bool(match) and match.group(1) in mission.mapped


def _dedupe(problems: list[str]) -> list[str]:
    seen: set[str] = set()
    return [p for p in problems if not (p in seen or seen.add(p))]


def _default_policy() -> "SecurityPolicy":
    from ..config import Config
    from ..security import SecurityPolicy

    return SecurityPolicy.from_config(Config.load())


def load_mission(path_or_text: str | os.PathLike[str], *, policy: "SecurityPolicy | None" = None,
                 components: Any = None, inputs: dict[str, Any] | None = None) -> Workflow:
    """The :class:`Workflow` of a mission file (or YAML text); raises ValidationError listing
    every problem :func:`validate_mission` finds."""
    registry = components.tools if components is not None else None
    mission = parse_mission(path_or_text, registry=registry)
    problems = validate_mission(mission, components=components, policy=policy, inputs=inputs)
    if problems:
        where = mission.workflow.source or "mission"
        raise ValidationError(f"invalid mission {where}: {len(problems)} problem(s)", problems,
                              details={"source": mission.workflow.source})
    return mission.workflow

"""Builders for the step types whose parameters need more than renaming (edit_file, command,
sql_query, llm, agent, chain, ...), and the shared parameter alias tables."""

from __future__ import annotations

import re
import shlex
from typing import Any

from .mapping import DROP, TEMPLATE_RE, Mapped, Refuse, rename_into

PATH_ALIASES = {"file": "path", "file_path": "path", "filename": "path"}
SRC_DST_ALIASES = {"src": "source", "from": "source", "source_path": "source",
                   "dest": "destination", "to": "destination", "destination_path": "destination", "target": "destination"}
TEXT_ALIASES = {"content": "text", "data": "text", "input": "text", "file": "path", "file_path": "path",
                "input_file": "path"}


def build_edit_file(params: dict[str, Any]) -> Mapped:
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
    rename_into(mapped, params, PATH_ALIASES)
    return mapped


def build_file_search(params: dict[str, Any]) -> Mapped:
    """``{pattern, root}`` -> file_search (names by glob); with ``content`` / ``query`` -> grep
    (content search in the files matching ``pattern``)."""
    wanted = next((k for k in ("content", "query", "text", "regex_pattern") if k in params), None)
    dirs = {"directory": "root", "dir": "root", "path": "root", "max_results": "max_results"}
    if wanted is None:
        mapped = Mapped("tool", "file_search", schema_tool="file_search")
        rename_into(mapped, params, dirs)
        return mapped
    mapped = Mapped("tool", "grep", schema_tool="grep")
    rest = dict(params)
    mapped.params["pattern"], mapped.names["pattern"] = rest.pop(wanted), wanted
    rename_into(mapped, rest, {"pattern": "glob", "directory": "path", "dir": "path", "root": "path",
                                "case_insensitive": "ignore_case", "max_results": "max_matches"})
    return mapped


def build_validate_schema(params: dict[str, Any]) -> Mapped:
    """``{data, schema}`` -> validate_schema; ``{file, schema_type: csv}`` -> csv_process validate."""
    params = dict(params)
    kind = params.pop("schema_type", None)
    if kind == "csv":
        mapped = Mapped("tool", "csv_process", schema_tool="csv_process")
        mapped.params["operation"] = "validate"
        rename_into(mapped, params, {"file": "path", "file_path": "path", "input_file": "path", "content": "text"})
        return mapped
    mapped = Mapped("tool", "validate_schema", schema_tool="validate_schema")
    if kind not in (None, "json", "json_schema", "jsonschema"):
        mapped.problems.append(("schema_type", f"schema type {kind!r} is not supported (json or csv)"))
    rename_into(mapped, params, {"value": "data", "instance": "data", "json_schema": "schema",
                                  "file": Refuse("validate_schema checks `data`: parse the file in a parse_json "
                                                  "step and pass data: \"{{that_step.output}}\"")})
    return mapped


def _argv(command: Any, args: Any) -> tuple[list[Any] | None, list[tuple[str | None, str]]]:
    problems: list[tuple[str | None, str]] = []
    if isinstance(command, list):
        argv = list(command)
    elif isinstance(command, str) and command.strip():
        if args is None and not TEMPLATE_RE.search(command) and len(command.split()) > 1:
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


def build_command(params: dict[str, Any]) -> Mapped:
    """``{command, args, working_dir, timeout, env, stdin}`` -> kind command (no shell)."""
    params = dict(params)
    mapped = Mapped("command", "run_process", schema_tool="run_process")
    argv, problems = _argv(params.pop("command", None), params.pop("args", None))
    mapped.problems += problems
    if argv is not None:
        mapped.params["command"], mapped.names["command"] = argv, "command"
    rename_into(mapped, params, {"working_dir": "cwd", "working_directory": "cwd", "dir": "cwd",
                                  "timeout": "timeout_s", "timeout_seconds": "timeout_s", "input": "stdin",
                                  "shell": Refuse("commands run without a shell; give the program and its args")})
    return mapped


def build_http(params: dict[str, Any]) -> Mapped:
    """``{url, method, headers, body, timeout}`` -> http_request (a table body is sent as JSON)."""
    params = dict(params)
    mapped = Mapped("tool", "http_request", schema_tool="http_request")
    if isinstance(params.get("body"), (dict, list)) and "json" not in params:
        params["json"] = params.pop("body")
    rename_into(mapped, params, {"timeout": "timeout_s", "timeout_seconds": "timeout_s", "query": "params",
                                  "query_params": "params", "data": "body", "retry": "retries"})
    return mapped


_REMOTE_DB = re.compile(r"^(postgres(ql)?|mysql|mariadb|redis|mongodb|mssql|oracle)(\+\w+)?://", re.I)


def build_sql(params: dict[str, Any]) -> Mapped:
    """``{database | connection, query, parameters}`` -> sql_query (SQLite database files)."""
    params = dict(params)
    mapped = Mapped("tool", "sql_query", schema_tool="sql_query")
    fmt = params.pop("output_format", "json")
    if fmt != "json":
        mapped.problems.append(("output_format", f"only json output is supported, got {fmt!r}"))
    rename_into(mapped, params, {"connection": "database", "db": "database", "database_path": "database",
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
_LLM_PARAMS = {"prompt": str, "model": str, "system": str, "temperature": (int, float), "max_tokens": int,
               "fallback": list}


def _check_llm_params(mapped: Mapped, allowed: dict[str, Any]) -> None:
    for key, value in list(mapped.params.items()):
        name = mapped.names.get(key, key)
        kind = allowed.get(key)
        if kind is None:
            mapped.problems.append((name, f"unknown parameter (known: {', '.join(sorted(allowed))})"))
            del mapped.params[key]
        elif isinstance(value, str) and TEMPLATE_RE.search(value):
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


def build_llm(params: dict[str, Any]) -> Mapped:
    """``{prompt, provider, model, temperature, max_tokens, system_message}`` -> kind llm."""
    params = dict(params)
    mapped = Mapped("llm")
    _model_name(params, mapped)
    rename_into(mapped, params, _LLM_ALIASES)
    if "prompt" not in mapped.params:
        mapped.problems.append(("prompt", "required: the text to send to the model"))
    _check_llm_params(mapped, _LLM_PARAMS)
    fallback = mapped.params.get("fallback")
    if isinstance(fallback, list) and not all(isinstance(m, str) for m in fallback):
        mapped.problems.append(("fallback", "expected a list of model names (provider/model or an alias)"))
    return mapped


_AGENT_PARAMS = {"name": str, "model": str, "system": str, "tools": list, "max_steps": int,
                 "temperature": (int, float), "max_tokens": int, "input": (str, dict, list), "agent": str}


def build_agent(params: dict[str, Any]) -> Mapped:
    """``{name, objective, model, tools, max_iterations, system}`` -> kind agent: an AgentSpec
    table as target, the objective as ``params.input``. ``{agent: NAME, objective}`` runs an
    agent defined elsewhere (in Lua) by name."""
    params = dict(params)
    mapped = Mapped("agent")
    _model_name(params, mapped)
    rename_into(mapped, params, {"objective": "input", "task": "input", "goal": "input", "prompt": "input",
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


def build_tool(params: dict[str, Any]) -> Mapped:
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


def build_git_add(params: dict[str, Any]) -> Mapped:
    """``{files | path | file, repository}`` -> git_add ``{paths, repo}``."""
    params = dict(params)
    for key in ("files", "path", "file"):
        if key in params and "paths" not in params:
            value = params.pop(key)
            params["paths"] = [value] if isinstance(value, str) else value
    mapped = Mapped("tool", "git_add", schema_tool="git_add")
    rename_into(mapped, params, {"repository": "repo", "repo_path": "repo", "directory": "repo"})
    return mapped


def build_noop(params: dict[str, Any]) -> Mapped:
    """A noop step whose output is its parameters."""
    return Mapped("noop", params=dict(params))


def build_approval(params: dict[str, Any]) -> Mapped:
    """``{message, timeout_s, default}`` -> kind approval: the run waits for a person's decision
    (``aikit mission approve RUN STEP``)."""
    return Mapped("approval", params=dict(params))


def build_chain(params: dict[str, Any]) -> Mapped:
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

"""The table of RustChain step types -> aikit steps, the unsupported ones, and listings of both."""

from __future__ import annotations

from .builders import (
    _PATH,
    _SRC_DST,
    _TEXT,
    _build_agent,
    _build_chain,
    _build_command,
    _build_edit_file,
    _build_file_search,
    _build_git_add,
    _build_http,
    _build_llm,
    _build_noop,
    _build_sql,
    _build_tool,
    _build_validate_schema,
)
from .mapping import StepType, _Refuse, _tool_step

_GIT_REPO = {"repository": "repo", "repo_path": "repo", "directory": "repo"}

#: RustChain step types -> aikit steps (see the package docstring and docs/missions.md).
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

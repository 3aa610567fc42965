"""The table of RustChain step types -> aikit steps, the unsupported ones, and listings of both."""

from __future__ import annotations

from .builders import (
    PATH_ALIASES,
    SRC_DST_ALIASES,
    TEXT_ALIASES,
    build_agent,
    build_approval,
    build_chain,
    build_command,
    build_edit_file,
    build_file_search,
    build_git_add,
    build_http,
    build_llm,
    build_noop,
    build_sql,
    build_tool,
    build_validate_schema,
)
from .mapping import Refuse, StepType, tool_step

_GIT_REPO = {"repository": "repo", "repo_path": "repo", "directory": "repo"}

#: RustChain step types -> aikit steps (see the package docstring and docs/missions.md).
STEP_TYPES: dict[str, StepType] = {t.name: t for t in [
    # file operations
    tool_step("create_file", "write_file", **PATH_ALIASES,
              mode=Refuse("file permissions are not supported; remove `mode`")),
    StepType("edit_file", "tool", "edit_file", summary="edit_file {old,new} | write_file {content} | "
             "append_file {content, append: true}", build=build_edit_file),
    tool_step("read_file", "read_file", **PATH_ALIASES),
    tool_step("delete_file", "delete_file", **PATH_ALIASES),
    tool_step("copy_file", "copy_file", **SRC_DST_ALIASES),
    tool_step("move_file", "move_file", **SRC_DST_ALIASES),
    tool_step("list_directory", "list_directory", directory="path", dir="path"),
    StepType("file_search", "tool", "file_search", summary="file_search {pattern} | grep {content|query}",
             build=build_file_search),
    # data processing
    tool_step("parse_json", "parse_json", **TEXT_ALIASES, json="text"),
    tool_step("parse_yaml", "parse_yaml", **TEXT_ALIASES, yaml="text"),
    tool_step("parse_xml", "parse_xml", **TEXT_ALIASES, xml="text"),
    StepType("validate_schema", "tool", "validate_schema", summary="validate_schema | csv_process validate "
             "(schema_type: csv)", build=build_validate_schema),
    tool_step("csv_process", "csv_process", input_file="path", file="path", file_path="path", content="text",
               data="text", output_file=Refuse("csv_process returns its result; write it with a create_file step")),
    # git
    tool_step("git_status", "git_status", path="repo", **_GIT_REPO),
    tool_step("git_diff", "git_diff", file="path", **_GIT_REPO),
    tool_step("git_log", "git_log", path="repo", limit="max_count", count="max_count", **_GIT_REPO),
    StepType("git_add", "tool", "git_add", build=build_git_add),
    tool_step("git_commit", "git_commit", path="repo", **_GIT_REPO),
    # system
    StepType("command", "command", "run_process", summary="kind command (run_process, no shell)",
             build=build_command),
    tool_step("compress", "compress", path="source", input="source", input_path="source", output="destination",
               output_path="destination", archive="destination", **SRC_DST_ALIASES),
    tool_step("monitor_resources", "system_info", summary="system_info"),
    # database
    StepType("sql_query", "tool", "sql_query", summary="sql_query (SQLite files)", build=build_sql),
    # network
    StepType("http", "tool", "http_request", summary="http_request", build=build_http),
    # AI
    StepType("llm", "llm", summary="kind llm (provider/model)", build=build_llm),
    StepType("agent", "agent", summary="kind agent (AgentSpec from the parameters)", build=build_agent),
    StepType("chain", "workflow", summary="kind workflow (a nested mission file)", build=build_chain),
    # control flow
    StepType("noop", "noop", summary="kind noop", build=build_noop),
    StepType("approval", "approval", summary="kind approval {message, timeout_s, default}: waits for a person "
             "(aikit mission approve RUN STEP)", build=build_approval),
    StepType("tool", "tool", summary="any aikit tool {name, args}", build=build_tool),
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
    """Every supported step type, sorted."""
    return sorted(STEP_TYPES)


def step_type_table() -> list[tuple[str, str]]:
    """``(step_type, what it runs)`` rows for docs and ``aikit mission types``."""
    rows = [(name, t.describe()) for name, t in STEP_TYPES.items()]
    rows += [(name, "not supported" + (f": {hint}" if hint else "")) for name, hint in UNSUPPORTED_STEP_TYPES.items()]
    return rows

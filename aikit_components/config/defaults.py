"""The built-in defaults; the type of each default is the type a configured value must have."""

from __future__ import annotations

from typing import Any

#: Built-in defaults; the type of each value is the type a configured value must have.
# Programs the process tools may run by default: no shells, no interpreters (python3 -c runs any
# code, which the argument path check cannot contain), no wrappers such as env/xargs that would run
# anything. security.py uses the same list. ``test`` and ``[`` only read (file tests, comparisons),
# and their path arguments are confined like any other program's.
DEFAULT_COMMANDS = ("git", "ls", "cat", "echo", "grep", "wc", "head", "tail", "sort", "uniq", "date",
                    "true", "false", "sleep", "pwd", "test", "[")

DEFAULTS: dict[str, dict[str, Any]] = {
    "kernel": {
        "max_memory_mb": 2048,  # memory available to Lua (0 = no limit)
        "max_message_mb": 64,  # larger incoming Jupyter messages are dropped
        "log_level": "WARNING",  # DEBUG, INFO, WARNING, ERROR or CRITICAL (logs go to stderr)
        "dap_port": 0,  # serve the Lua debugger over DAP on this port (0 = not served)
        "resume_session": "",  # resume this session id instead of starting a new session
    },
    "security": {
        "allowed_paths": [],
        "allowed_hosts": [],
        "allow_private_hosts": False,
        "allowed_commands": list(DEFAULT_COMMANDS),
        "unrestricted_commands": [],  # allowed programs exempt from command_rules' argument rules
        "confine_processes": "auto",  # auto | landlock | off: OS confinement of started programs (confinement.py)
        "env_allowlist": ["HOME", "USER", "LANG", "LC_ALL", "TZ", "PWD", "SHELL", "TERM"],
        "max_tool_calls": 1000,
        "max_wall_time_s": 3600,
        # [security.approval]: require = [policy names] (control/approvals.py POLICIES), spend_above_usd
        "approval": {},
    },
    "state": {
        "backend": "sqlite",
    },
    "artifacts": {
        "max_bytes": 104857600,
    },
    "storage": {
        "url": "",  # postgresql://USER:PASSWORD@HOST:PORT/DB moves the stores to PostgreSQL ("": SQLite files)
        "password": "",  # kept out of the url so `aikit config show` masks it (or password_env = "VAR")
        "schema": "",  # PostgreSQL schema for aikit's tables ("": the user's search_path, usually public)
        "pool_min": 1,
        "pool_max": 10,
        "pool_timeout_s": 10,  # wait at most this long for a free pooled connection
        "connect_timeout_s": 10,
        "artifact_blobs": "",  # "database" (PostgreSQL table) or "directory" ("": database with a url, else directory)
        "blobs_dir": "",  # shared directory for artifact content ("": <data_dir>/blobs)
        "rag": "files",  # or "postgres": RAG collections in PostgreSQL (tsvector + pgvector) instead of hnswlib files
    },
    "tools": {
        "http_timeout_s": 30,
        "http_retries": 2,
        "http_backoff_s": 0.5,
        "http_max_retry_after_s": 30,
        "http_max_bytes": 10 * 1024 * 1024,
        "fetch_max_chars": 20_000,
        "max_input_bytes": 20 * 1024 * 1024,
        "process_timeout_s": 60,
        "process_output_cap_bytes": 1048576,
        "process_inherit_env": False,
        "sql_timeout_s": 30,
        "sql_busy_timeout_s": 5,
        "git_timeout_s": 60,
        "git_run_hooks": False,
    },
    "providers": {},
    "dashboard": {  # `aikit dashboard`
        "host": "127.0.0.1",  # any other than a loopback address needs a token
        "port": 8080,
        "token": "",  # access token (required when host is not loopback); a secret
    },
    "audit": {
        "enabled": True,  # the hash-chained audit ledger <data_dir>/audit.sqlite (docs/security.md)
    },
    "budgets": {},  # [budgets.session], [budgets.agent], [budgets.workflow]: see docs/lua-api.md, Control
    "mcp": {
        "call_timeout_s": 60,  # per MCP request (a server's timeout_s overrides it)
        "connect_timeout_s": 30,
        "max_result_bytes": 8 * 1024 * 1024,  # a larger tool result is an error
        "max_message_bytes": 32 * 1024 * 1024,  # a larger message from a stdio server ends the connection
        "max_request_bytes": 4 * 1024 * 1024,  # `aikit mcp serve`/MCP.serve: a larger request is refused
        "serve_token": "",  # bearer token of `aikit mcp serve --port` (required when not on loopback)
        "servers": {},  # [mcp.servers.NAME]: command/args/env/cwd or url/headers, timeout_s
    },
    "rag": {
        "embedder": "local",  # or "<provider>/<model>" (an OpenAI-compatible or Ollama embedding endpoint)
        "embedding_cache": True,
        "chunker": "auto",
        "chunk_size": 800,
        "chunk_overlap": 100,
        "chunk_unit": "chars",
        "M": 16,
        "ef_construction": 200,
        "ef_search": 64,
        "exact_threshold": 5000,
    },
    "telemetry": {  # docs/observability.md
        "enabled": True,  # spans to the local store (and OTLP when configured); OTEL_SDK_DISABLED=true also turns it off
        "capture_content": False,  # record prompts, answers, tool arguments and results
        "otlp_endpoint": "",  # base URL of an OTLP/HTTP collector (or OTEL_EXPORTER_OTLP_ENDPOINT)
        "otlp_headers": "",  # key=value,key2=value2 (or OTEL_EXPORTER_OTLP_HEADERS)
        "traceparent_http": True,  # send a W3C traceparent header with requests to model providers
        "store_path": "",  # default: traces.sqlite in the data directory
        "store_max_age_days": 7,
        "store_max_mb": 200,
        "queue_size": 8192,  # spans waiting to be written or sent; more are dropped (and counted)
    },
    "ray": {
        # the cluster of the "ray" executor: HOST:PORT of a head (`ray start --head`), ray://HOST:PORT
        # (Ray Client) or "auto"; empty: $RAY_ADDRESS, else a local cluster started on first use
        "address": "",
    },
}

#: Sections whose keys are free-form (one sub-table per provider): no unknown-key warnings.
OPEN_SECTIONS = frozenset({"providers", "models", "budgets"})

#: Durations: integer defaults that also accept a float (``http_timeout_s = 2.5``).
NUMBER_KEYS = frozenset({
    "security.max_wall_time_s", "tools.http_timeout_s", "tools.process_timeout_s", "tools.http_backoff_s",
    "tools.http_max_retry_after_s", "tools.sql_timeout_s", "tools.sql_busy_timeout_s", "tools.git_timeout_s",
    "telemetry.store_max_age_days", "telemetry.store_max_mb",
    "mcp.call_timeout_s", "mcp.connect_timeout_s",
    "storage.pool_timeout_s", "storage.connect_timeout_s",
})

#: Older environment variables kept as aliases of a setting (documented in the README). An
#: ``AIKIT_<SECTION>__<KEY>`` override of the same setting wins over its alias.
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "AIKIT_MAX_MEMORY_MB": ("kernel", "max_memory_mb"),
    "AIKIT_MAX_MESSAGE_MB": ("kernel", "max_message_mb"),
    "AIKIT_LOG_LEVEL": ("kernel", "log_level"),
    "AIKIT_DAP_PORT": ("kernel", "dap_port"),
    "AIKIT_SESSION": ("kernel", "resume_session"),
}

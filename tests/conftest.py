"""The shared test helpers live in ``tests/support/`` (test modules import them from there, never
from a conftest or another test module). These are the ones that provide fixtures to every test."""

pytest_plugins = [
    "tests.support.kernels",  # throwaway_kernel
    "tests.support.llm_server",  # llm_server, refused_url
    "tests.support.lua",  # make_lua, lua
    "tests.support.agents",  # make_agent_lua, agent_kernel
    "tests.support.otlp",  # otlp_receiver
    "tests.support.postgres",  # pg_server, pg_url, pg_database
    "tests.support.scripted_model",  # scripted_model (the applications' test double)
    "tests.support.applications",  # app (runs examples/applications/NAME)
]

import os  # noqa: E402

# Tests write project aikit.toml files that widen the policy for what they exercise (a local
# server's host, a program). Those count only once the user trusts them (config/trust.py); here
# every project file is trusted, except in the tests of that rule, which set their own environment
# (tests/test_config.py, tests/security/test_lua_process_safety.py).
os.environ.setdefault("AIKIT_TRUST_PROJECT_CONFIG", "1")

"""The shared test helpers live in ``tests/support/`` (test modules import them from there, never
from a conftest or another test module). These are the ones that provide fixtures to every test."""

pytest_plugins = [
    "tests.support.kernels",  # throwaway_kernel
    "tests.support.llm_server",  # llm_server, refused_url
    "tests.support.lua",  # make_lua, lua
    "tests.support.agents",  # make_agent_lua
    "tests.support.postgres",  # pg_server, pg_url, pg_database
]

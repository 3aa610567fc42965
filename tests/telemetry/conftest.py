"""The telemetry tests use the agent helpers' local OpenAI-format server (``make_agent_lua``)."""

"""The trust of project aikit.toml files that tests/conftest.py gives every test
(``AIKIT_TRUST_PROJECT_CONFIG``; see aikit_components/config/trust.py)."""

from __future__ import annotations

import os


def trusting_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` plus the trust of project files that tests/conftest.py gives every test."""
    trust = {k: v for k, v in os.environ.items() if k == "AIKIT_TRUST_PROJECT_CONFIG"}
    return {**trust, **(env or {})}

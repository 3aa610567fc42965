"""Test interceptors for the operation pipeline: one that records what it sees, one that refuses."""

from __future__ import annotations

from typing import Any

from aikit_components.errors import PermissionDenied
from aikit_components.operations import APPROVAL, POLICY, Decision, Interceptor, Operation


class Recorder(Interceptor):
    """Records the operations of the given kinds as the before-stage sees them."""

    order = POLICY + 50
    name = "test-recorder"

    def __init__(self, *kinds: str) -> None:
        self.kinds = set(kinds)
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    def wants(self, op: Operation) -> bool:
        return op.kind.name in self.kinds

    def before(self, op: Operation) -> Decision | None:
        self.seen.append((op.kind.name, op.name, dict(op.payload)))
        return None


class Refuser(Interceptor):
    """Refuses every operation of the given kinds, as an approval that says no would."""

    order = APPROVAL
    name = "test-refuser"

    def __init__(self, *kinds: str) -> None:
        self.kinds = set(kinds)

    def wants(self, op: Operation) -> bool:
        return op.kind.name in self.kinds

    def before(self, op: Operation) -> Decision | None:
        raise PermissionDenied(f"{op.describe()} was not approved", details={"rule": "approval"})

"""``Session`` and ``Artifact``: the kernel's session and its stored outputs."""

from __future__ import annotations

from typing import Any

from aikit_components.components import Components
from aikit_components.control.budgets import BudgetLimits
from aikit_components.errors import InvalidArgument

from ..engine import LuaEngine
from . import expose
from ._util import lua, lua_kind, name_arg, options, py

SESSION_DOCS = {
    "": "Session\n\nThe session this kernel (or script) runs in: Session.current(), Session.list{...}.",
    "current": "Session.current() -> {id, name, status, created_at, updated_at, metadata}\n\nThis kernel's session.\n"
               "Example: print(Session.current().id)",
    "list": "Session.list([{status = 'active'|'completed'|'failed'|'interrupted', limit = 100}]) -> {session, ...}"
            "\n\nRecent sessions, "
            "newest first.\nExample: for _, s in ipairs(Session.list{limit = 5}) do print(s.id, s.status) end",
    "budget": "Session.budget([{tokens, cost, tool_calls, wall_time_s, per_tool = {name = N}}]) -> use\n\nSets the "
              "session's budget when given (over [budgets.session]); returns its use against each budget: "
              "{tokens = {used, limit}, cost = ..., tool_calls = ..., wall_time_s = ..., per_tool = {...}}.\n"
              "Example: Session.budget{tool_calls = 500}; print(Session.budget().tool_calls.used)",
}
ARTIFACT_DOCS = {
    "": "Artifact\n\nVersioned, content-addressed outputs (text or bytes) kept in aikit's data directory.",
    "put": "Artifact.put(name, content [, {mime = ..., metadata = {...}}]) -> {name, version, sha256, size, mime, ...}\n\n"
           "Stores a new version of an artifact (durable on return).\n"
           "Example: Artifact.put('report.md', '# Report', {mime = 'text/markdown'})",
    "get": "Artifact.get(name [, version]) -> {content, name, version, sha256, size, mime, metadata}\n\nThe latest (or "
           "given) version, checked against its sha256.\nExample: Artifact.get('report.md').content",
    "list": "Artifact.list([{prefix = ..., session = id}]) -> {info, ...}\n\nThe latest version of each artifact, by name.\n"
            "Example: for _, a in ipairs(Artifact.list()) do print(a.name, a.version) end",
    "versions": "Artifact.versions(name) -> {info, ...}\n\nEvery version of an artifact, oldest first.",
    "delete": "Artifact.delete(name [, version]) -> removed\n\nDeletes one version, or all of them.",
}


def install(engine: LuaEngine, components: Components) -> None:
    sessions, artifacts = components.sessions, components.artifacts

    def current() -> Any:
        components.session = sessions.get(components.session.id)
        return lua(engine, components.session.to_dict())

    def list_sessions(opts: Any = None) -> Any:
        o = options(engine, opts, ("status", "limit"), "Session.list")
        return lua(engine, [s.to_dict() for s in sessions.list(o.get("status"), o.get("limit", 100))])

    def budget(limits: Any = None) -> Any:
        budgets = components.budgets
        if budgets is None:
            return None
        if limits is not None:
            budgets.set_session_limits(BudgetLimits.parse(py(engine, limits), "Session.budget"))
        return lua(engine, budgets.session.report())

    expose(engine, "Session", {"current": current, "list": list_sessions, "budget": budget}, SESSION_DOCS,
           convert=False)

    def put(name: Any, content: Any, opts: Any = None) -> Any:
        o = options(engine, opts, ("mime", "metadata"), "Artifact.put")
        if not isinstance(content, bytes):
            raise InvalidArgument(f"Artifact.put: the content must be a string, got {lua_kind(content)}")
        data = content
        if isinstance(data, bytes) and o.get("mime") is None:
            try:
                data = data.decode("utf-8")  # Lua strings are bytes: text when they are UTF-8
            except UnicodeDecodeError:
                pass
        info = artifacts.put(name_arg(name, "Artifact.put: the name"), data, mime=o.get("mime"),
                             metadata=o.get("metadata"), session_id=components.session.id)
        return lua(engine, info.to_dict())

    def get(name: Any, version: Any = None) -> Any:
        info, data = artifacts.get(name_arg(name, "Artifact.get: the name"), version)
        table = lua(engine, info.to_dict())
        table[b"content"] = data
        return table

    def list_artifacts(opts: Any = None) -> Any:
        o = options(engine, opts, ("prefix", "session"), "Artifact.list")
        return lua(engine, [a.to_dict() for a in artifacts.list(session_id=o.get("session"), prefix=o.get("prefix"))])

    def versions(name: Any) -> Any:
        return lua(engine, [a.to_dict() for a in artifacts.versions(name_arg(name, "Artifact.versions: the name"))])

    def delete(name: Any, version: Any = None) -> int:
        return artifacts.delete(name_arg(name, "Artifact.delete: the name"), version)

    expose(engine, "Artifact", {"put": put, "get": get, "list": list_artifacts, "versions": versions, "delete": delete},
           ARTIFACT_DOCS, convert=False)

"""RAG ingests and searches, program launches and outgoing HTTP requests are operations of the
process's pipeline (``Components.pipeline``): each publishes its events with the documented fields,
an interceptor added to the pipeline sees it (kind, name, payload), and an interceptor that raises
``PermissionDenied`` in ``before`` stops a launch or a request before anything happens (how
approvals and policies plug in). Real programs, a real HTTP server on 127.0.0.1, real SQLite."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.errors import IOFailure, NotFound, PermissionDenied, Timeout
from aikit_components.events import Event
from tests.support.http import QuietHandler, serving
from tests.support.operations import Recorder, Refuser
from tests.support.rag import unit_vectors


class Handler(QuietHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_bytes(200, b"fine", "text/plain")

    def do_POST(self) -> None:
        type(self).requests.append(self.path)
        self.read_body()
        self.send_json(200, {"ok": True})


@pytest.fixture
def server() -> Iterator[str]:
    Handler.requests = []
    with serving(Handler) as url:
        yield url


@pytest.fixture
def components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Components]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "aikit.toml").write_text('[security]\nallowed_hosts = ["127.0.0.1"]\n')
    config = Config.load(cwd=tmp_path, env={}, user_dir=tmp_path / "user")
    c = Components.open(config=config, data_dir=tmp_path / "data", plugins=False)
    yield c
    c.close()


def events(sub: Any) -> list[Event]:
    return sub.drain()


def call(c: Components, name: str, args: dict[str, Any]) -> Any:
    return asyncio.run(c.tools.acall(name, args, c.tool_context()))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ================================================================================== RAG
class TestRag:
    def test_ingest_and_search_publish_their_events_and_are_seen(self, components: Components) -> None:
        recorder = components.pipeline.add(Recorder("rag.ingest", "rag.search"))
        sub = components.events.subscribe("rag.*")
        col = components.rag.collection("notes", tenant="acme")
        vectors = unit_vectors(2)
        col.ingest([{"id": "a", "text": "apples are red", "vector": vectors[0].tolist()},
                    {"id": "b", "text": "bananas are yellow", "vector": vectors[1].tolist()}])
        col.ingest([{"id": "a", "text": "apples are red", "vector": vectors[0].tolist()}])  # unchanged
        hits = col.search("yellow", k=3, mode="lexical", filter={})
        assert [h["document_id"] for h in hits] == ["b"]
        col.search_now(vectors[0].tolist(), k=1, mode="vector")

        ingested, again, searched, by_vector = events(sub)
        assert [e.topic for e in (ingested, again, searched, by_vector)] == [
            "rag.ingested", "rag.ingested", "rag.searched", "rag.searched"]
        assert {e.source for e in (ingested, searched)} == {"rag"}
        assert set(ingested.payload) == {"collection", "tenant", "documents", "chunks", "unchanged", "duration_ms"}
        assert {k: ingested.payload[k] for k in ("collection", "tenant", "documents", "chunks", "unchanged")} == {
            "collection": "notes", "tenant": "acme", "documents": 2, "chunks": 2, "unchanged": 0}
        assert (again.payload["documents"], again.payload["unchanged"]) == (0, 1)
        assert set(searched.payload) == {"collection", "tenant", "mode", "k", "hits", "filtered", "duration_ms"}
        assert {k: searched.payload[k] for k in ("collection", "tenant", "mode", "k", "hits", "filtered")} == {
            "collection": "notes", "tenant": "acme", "mode": "lexical", "k": 3, "hits": 1, "filtered": False}
        assert (by_vector.payload["mode"], by_vector.payload["hits"]) == ("vector", 1)
        assert searched.payload["duration_ms"] >= 0

        kinds = [(kind, name) for kind, name, _ in recorder.seen]
        assert kinds == [("rag.ingest", "notes"), ("rag.ingest", "notes"), ("rag.search", "notes"),
                         ("rag.search", "notes")]
        assert recorder.seen[0][2] == {"collection": "notes", "tenant": "acme", "ids": ["a", "b"]}
        assert recorder.seen[2][2] == {"collection": "notes", "tenant": "acme", "query": "yellow", "k": 3,
                                       "mode": "lexical", "filter": {}}

    def test_an_interceptor_can_refuse_an_ingest(self, components: Components) -> None:
        components.pipeline.add(Refuser("rag.ingest"))
        col = components.rag.collection("locked")
        with pytest.raises(PermissionDenied, match="ingest into collection 'locked' was not approved"):
            col.ingest([{"id": "a", "text": "nothing stored", "vector": unit_vectors(1)[0].tolist()}])
        assert col.stats()["documents"] == 0


# ============================================================================= processes
class TestProcess:
    def test_a_launch_publishes_started_and_finished(self, components: Components, tmp_path: Path) -> None:
        recorder = components.pipeline.add(Recorder("process"))
        sub = components.events.subscribe("process.*")
        result = call(components, "run_process", {"command": ["echo", "hi"]})
        assert result["stdout"] == "hi\n"

        started, finished = events(sub)
        assert (started.topic, finished.topic) == ("process.started", "process.finished")
        assert started.source == "process"
        [(kind, name, payload)] = recorder.seen
        assert (kind, name) == ("process", "echo")
        assert Path(payload["argv"][0]).name == "echo" and payload["argv"][1:] == ["hi"]
        assert payload["cwd"] == str(tmp_path.resolve())
        identity = {"program": "echo", "command": payload["argv"], "cwd": str(tmp_path.resolve()), "caller": "python"}
        assert started.payload == identity
        assert set(finished.payload) == {*identity, "exit_code", "duration_ms"}
        assert {k: finished.payload[k] for k in identity} == identity
        assert finished.payload["exit_code"] == 0 and finished.payload["duration_ms"] >= 0

    def test_a_nonzero_exit_is_finished_and_a_timeout_failed(self, components: Components) -> None:
        sub = components.events.subscribe("process.*")
        assert call(components, "run_process", {"command": ["false"]})["exit_code"] == 1
        with pytest.raises(Timeout):
            call(components, "run_process", {"command": ["sleep", "30"], "timeout_s": 0.2})

        topics = [(e.topic, e.payload.get("exit_code"), e.payload.get("code")) for e in events(sub)]
        assert topics == [("process.started", None, None), ("process.finished", 1, None),
                          ("process.started", None, None), ("process.failed", None, "timeout")]

    def test_git_launches_git(self, components: Components, tmp_path: Path) -> None:
        recorder = components.pipeline.add(Recorder("process"))
        with pytest.raises(NotFound, match="not a git repository"):  # git ran and said so
            call(components, "git_status", {"repo": str(tmp_path)})
        [(kind, name, payload)] = recorder.seen
        assert (kind, name) == ("process", "git") and "status" in payload["argv"]

    def test_a_refused_launch_runs_nothing(self, components: Components, tmp_path: Path) -> None:
        components.pipeline.add(Refuser("process"))
        sub = components.events.subscribe("process.*")
        marker = tmp_path / "made"
        with pytest.raises(PermissionDenied) as info:
            call(components, "run_process", {"command": ["git", "init", str(marker)]})
        assert info.value.message == "program 'git' was not approved"
        assert not marker.exists()
        [failed] = events(sub)
        assert failed.topic == "process.failed"
        assert (failed.payload["program"], failed.payload["code"]) == ("git", "permission_denied")

    def test_a_plan_shell_task_launches_through_the_given_pipeline(self, components: Components,
                                                                   tmp_path: Path) -> None:
        from aikit_components.plans import PlanRunner, RunOptions, hooks_from_dict, parse_sot

        recorder = components.pipeline.add(Recorder("process"))
        plan = parse_sot("## Q\n- [ ] TASK-001 say hi\n", "sot.md").raise_for_problems()
        hooks = hooks_from_dict({"TASK-001": ["echo", "from the plan"]})
        runner = PlanRunner(plan, commands=hooks, components=components,
                            options=RunOptions(runs_dir=tmp_path / "runs"))
        assert runner.run().status == "ok"
        [(kind, name, payload)] = recorder.seen
        assert (kind, name, payload["argv"][1:]) == ("process", "echo", ["from the plan"])

    def test_without_a_pipeline_a_launch_runs_directly(self, components: Components) -> None:
        from aikit_components.tools.system import run_argv

        sub = components.events.subscribe("process.*")
        out = asyncio.run(run_argv(["/bin/sh", "-c", "echo direct"], cwd=None, env={}, stdin=None, timeout_s=10,
                                   max_output_bytes=1000))
        assert out.text() == "direct\n" and events(sub) == []


# ============================================================================ HTTP requests
class TestHttp:
    def test_a_tool_request_publishes_started_and_finished(self, components: Components, server: str) -> None:
        recorder = components.pipeline.add(Recorder("http"))
        sub = components.events.subscribe("http.*")
        result = call(components, "http_request", {"url": server + "/ok?token=s3cret&page=2",
                                                   "headers": {"Authorization": "Bearer s3cret"}})
        assert (result["status"], result["text"]) == (200, "fine")

        [(kind, name, payload)] = recorder.seen
        assert (kind, name) == ("http", "GET 127.0.0.1")
        assert set(payload) == {"method", "url"} and payload["method"] == "GET"
        assert payload["url"].startswith(server + "/ok?") and "page=2" in payload["url"]
        started, finished = events(sub)
        assert (started.topic, finished.topic, started.source) == ("http.started", "http.finished", "http")
        assert started.payload == payload
        assert set(finished.payload) == {"method", "url", "status", "duration_ms"}
        assert finished.payload["status"] == 200 and finished.payload["url"] == payload["url"]
        assert "s3cret" not in repr([payload, started.payload, finished.payload])

    def test_each_redirect_hop_is_a_request(self, components: Components, server: str) -> None:
        recorder = components.pipeline.add(Recorder("http"))
        sub = components.events.subscribe("http.finished")
        assert call(components, "fetch_page", {"url": server + "/redirect"})["url"] == server + "/ok"
        assert [p["url"] for _, _, p in recorder.seen] == [server + "/redirect", server + "/ok"]
        assert [e.payload["status"] for e in events(sub)] == [302, 200]

    def test_a_connection_failure_is_failed(self, components: Components) -> None:
        sub = components.events.subscribe("http.*")
        url = f"http://127.0.0.1:{closed_port()}/"
        with pytest.raises(IOFailure):
            call(components, "http_request", {"url": url, "retries": 0})
        started, failed = events(sub)
        assert (started.topic, failed.topic) == ("http.started", "http.failed")
        assert {k: failed.payload[k] for k in ("method", "url", "code")} == {"method": "GET", "url": url,
                                                                             "code": "io_error"}
        assert "ConnectError" in failed.payload["message"]

    def test_a_refused_request_is_not_sent(self, components: Components, server: str) -> None:
        components.pipeline.add(Refuser("http"))
        sub = components.events.subscribe("http.*")
        with pytest.raises(PermissionDenied) as info:
            call(components, "http_request", {"url": server + "/ok", "method": "POST", "body": "x"})
        assert info.value.message == "HTTP request 'POST 127.0.0.1' was not approved"
        assert Handler.requests == []
        [failed] = events(sub)
        assert (failed.topic, failed.payload["code"]) == ("http.failed", "permission_denied")

    def test_a_provider_endpoint_keeps_the_environments_proxy(self, components: Components, server: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """Wrapping the providers' client for the pipeline must not lose ``HTTP_PROXY``: the
        request goes to the proxy (the local server), and the operation names the real target."""
        from aikit_components.providers.http import HTTPEndpoint

        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", server)
        recorder = components.pipeline.add(Recorder("http"))

        async def post() -> Any:
            async with HTTPEndpoint("http://models.example.invalid/v1", name="lab", retries=0,
                                    pipeline=components.pipeline) as endpoint:
                return await endpoint.post_json("/embeddings", {"input": "x"})

        status, _, data = asyncio.run(post())
        assert (status, data) == (200, {"ok": True})
        assert Handler.requests == ["http://models.example.invalid/v1/embeddings"]
        assert recorder.seen == [("http", "POST models.example.invalid",
                                  {"method": "POST", "url": "http://models.example.invalid/v1/embeddings"})]

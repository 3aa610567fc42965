-- APP_MODEL, a TEST MODEL for all 21 agents: each lead delegates to every member (its tools), then
-- answers with its group's document; the implementation lead's first todo_api.py forgets to delete
-- (the tests catch it), and its answer to the failures is the fixed file. These are the answers a
-- capable model would give, scripted (the same ones tests/applications/test_web_app_creator.py uses).
TODO_API = [==[
"""A to-do list HTTP API (WSGI, standard library only): GET/POST /todos, POST /todos/ID/done, DELETE /todos/ID."""

import json

TODOS = {}
NEXT_ID = [1]


def _reply(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def app(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    parts = [p for p in path.split("/") if p]
    if parts == ["todos"] and method == "GET":
        return _reply(start_response, "200 OK", list(TODOS.values()))
    if parts == ["todos"] and method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        text = json.loads(environ["wsgi.input"].read(size) or b"{}").get("text", "")
        if not text:
            return _reply(start_response, "400 Bad Request", {"error": "text is required"})
        item = {"id": NEXT_ID[0], "text": text, "done": False}
        TODOS[item["id"]] = item
        NEXT_ID[0] += 1
        return _reply(start_response, "201 Created", item)
    if len(parts) >= 2 and parts[0] == "todos" and parts[1].isdigit():
        item = TODOS.get(int(parts[1]))
        if item is None:
            return _reply(start_response, "404 Not Found", {"error": "no such item"})
        if parts[2:] == ["done"] and method == "POST":
            item["done"] = True
            return _reply(start_response, "200 OK", item)
        if len(parts) == 2 and method == "DELETE":
            del TODOS[item["id"]]
            return _reply(start_response, "200 OK", {"deleted": item["id"]})
    return _reply(start_response, "404 Not Found", {"error": "no such route"})
]==]
-- The implementation lead's first version forgets to delete: the fixed file without that line.
local function without_line(text, line)
  local at = text:find(line, 1, true)
  return text:sub(1, at - 1) .. text:sub(at + #line)
end
BUGGY_TODO_API = without_line(TODO_API, '            del TODOS[item["id"]]\n')
TEST_TODO_API = [==[
"""Tests of todo_api, calling the WSGI app directly."""

import io
import json
import unittest
from wsgiref.util import setup_testing_defaults

import todo_api


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(data)),
               "wsgi.input": io.BytesIO(data)}
    setup_testing_defaults(environ)
    seen = {}
    out = todo_api.app(environ, lambda status, headers: seen.update(status=status))
    return int(seen["status"].split()[0]), json.loads(b"".join(out))


class TodoApiTest(unittest.TestCase):
    def setUp(self):
        todo_api.TODOS.clear()

    def test_add_and_list(self):
        status, item = call("POST", "/todos", {"text": "milk"})
        self.assertEqual((status, item["text"], item["done"]), (201, "milk", False))
        self.assertEqual(call("GET", "/todos")[1], [item])

    def test_empty_text_is_refused(self):
        self.assertEqual(call("POST", "/todos", {"text": ""})[0], 400)

    def test_complete(self):
        item = call("POST", "/todos", {"text": "bread"})[1]
        self.assertTrue(call("POST", f"/todos/{item['id']}/done")[1]["done"])

    def test_delete(self):
        item = call("POST", "/todos", {"text": "eggs"})[1]
        self.assertEqual(call("DELETE", f"/todos/{item['id']}")[0], 200)
        self.assertEqual(call("GET", "/todos")[1], [])
        self.assertEqual(call("DELETE", f"/todos/{item['id']}")[0], 404)
]==]
local documents = {
  requirements_lead = "# Requirements\n\n- list, add, complete and delete to-do items over HTTP, JSON in and out\n- an empty text is refused (400); an unknown item is 404\n",
  architecture_lead = "# Architecture\n\nOne WSGI module, todo_api.py: an in-memory dict of items {id, text, done}.\n\n| route | answer |\n|---|---|\n| GET /todos | 200, the items |\n| POST /todos | 201, the new item |\n| POST /todos/ID/done | 200 |\n| DELETE /todos/ID | 200, or 404 |\n",
  docs_lead = "# To-do API\n\nA WSGI application: `python3 -m wsgiref.simple_server` style hosting of `todo_api.app`.\nRun its tests with `python3 -m unittest test_todo_api`.\n",
  review_lead = "# Review\n\nNo blocking findings: input is parsed as JSON, sizes come from CONTENT_LENGTH, unknown routes are 404.\n",
}
APP_MODEL = function(messages, tools)
  local system, last = messages[1].text, messages[#messages]
  local lead = system:match("^You are the (%w+_lead),")
  if not lead then return "My part: done, see the notes." end
  if last.role == "user" and last.text:find("^The tests failed") then
    return "```python\n" .. TODO_API .. "```"
  end
  if last.role == "user" then
    local calls = {}
    for _, tool in ipairs(tools) do calls[#calls + 1] = {name = tool.name, arguments = {input = "your part of: " .. lead}} end
    return {tool_calls = calls}
  end
  if lead == "implementation_lead" then return "```python\n" .. BUGGY_TODO_API .. "```" end
  if lead == "test_lead" then return "```python\n" .. TEST_TODO_API .. "```" end
  return documents[lead]
end

"""The local provider through the real llama.cpp server: grammar-constrained tool calls and
``output_schema`` with the packaged model (every call well-formed), and the chat-template path
with a GGUF the test makes (the packaged model plus a ``tokenizer.chat_template``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
from pathlib import Path

import jsonschema
import pytest

from aikit_components.providers import Message, Request, ToolSpec
from aikit_components.providers.gguf_metadata import read_chat_template, read_metadata
from aikit_components.providers.local import LocalProvider
from aikit_components.providers.local_grammar import tool_call_schema

from .test_local_model import needs_model

pytestmark = needs_model

TOOLS = [
    ToolSpec("calculator", "Evaluate an arithmetic expression.",
             {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}),
    ToolSpec("read_file", "Read a text file.",
             {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    ToolSpec("http_get", "Fetch a URL.", {"type": "object", "properties": {"url": {"type": "string"},
                                                                          "max_bytes": {"type": "integer"}},
                                          "required": ["url"]}),
    ToolSpec("final_answer", "Give the final answer.",
             {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}),
]
ASKS = ["What is 17 * 23?", "Show me the contents of notes.txt", "Fetch https://example.com"]
# Grammar-constrained sampling is slow on a shared CPU (a vocabulary of 262k tokens checked per step)
SLOW = {"timeout_s": 900}
TEMPLATE = ("{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
            "{{ m['content'] }}<end_of_turn>\n{% endfor %}<start_of_turn>model\n")


def run(coro):
    return asyncio.run(coro)


def assert_well_formed(completion) -> None:
    """Either plain text, or one call of an offered tool whose arguments match its schema."""
    schemas = {tool.name: tool.parameters for tool in TOOLS}
    if not completion.tool_calls:
        assert not completion.text.lstrip().startswith("{"), completion.text
        return
    assert len(completion.tool_calls) == 1 and completion.stop_reason == "tool_calls"
    call = completion.tool_calls[0]
    assert call.name in schemas
    jsonschema.validate(call.arguments, schemas[call.name])


def test_tool_calls_of_the_packaged_model_are_well_formed() -> None:
    async def go():
        provider = LocalProvider(**SLOW)
        try:
            assert await provider.uses_chat_template() is False  # the packaged model is a base model
            return [await provider.complete(Request("gemma3-270m", [Message.user(ask)], tools=TOOLS, temperature=0.7,
                                                    max_tokens=96)) for ask in ASKS]
        finally:
            await provider.aclose()

    for completion in run(go()):
        assert_well_formed(completion)


def test_output_schema_always_parses_and_validates() -> None:
    schema = tool_call_schema(TOOLS)  # forces a call: every answer must be one valid call

    async def go():
        provider = LocalProvider(**SLOW)
        try:
            request = Request("gemma3-270m", [Message.user("What is 2 + 2?")], json_schema=schema, temperature=0.9)
            answers = [(await provider.complete(request)).text for _ in range(2)]
            streamed = "".join([e.text async for e in provider.stream(request) if e.kind == "text"])
            return answers + [streamed]
        finally:
            await provider.aclose()

    for text in run(go()):
        value = json.loads(text, strict=False)
        jsonschema.validate(value, schema)
        assert value["tool"] in {t.name for t in TOOLS}


def add_chat_template(source: Path, target: Path, template: str) -> None:
    """Copy a GGUF adding ``tokenizer.chat_template`` to its metadata (tensor data realigned)."""
    with open(source, "rb") as f:
        head = f.read(24)
        _magic, _version, tensors, kvs = struct.unpack("<4sIQQ", head)
    alignment = int(read_metadata(source, {"general.alignment"}).get("general.alignment", 32))
    with open(source, "rb") as f:
        f.seek(24)
        for _ in range(kvs):  # walk past the metadata, then the tensor infos
            _skip_string(f)
            _skip_value(f, struct.unpack("<I", f.read(4))[0])
        kv_end = f.tell()
        for _ in range(tensors):
            _skip_string(f)
            dims = struct.unpack("<I", f.read(4))[0]
            f.seek(8 * dims + 4 + 8, 1)
        info_end = f.tell()
        data_start = -(-info_end // alignment) * alignment
        f.seek(24)
        kv_bytes = f.read(kv_end - 24)
        info_bytes = f.read(info_end - kv_end)
        key, value = b"tokenizer.chat_template", template.encode()
        extra = struct.pack("<Q", len(key)) + key + struct.pack("<I", 8) + struct.pack("<Q", len(value)) + value
        with open(target, "wb") as out:
            out.write(struct.pack("<4sIQQ", b"GGUF", _version, tensors, kvs + 1) + kv_bytes + extra + info_bytes)
            out.write(b"\0" * (-out.tell() % alignment))
            f.seek(data_start)
            shutil.copyfileobj(f, out)


def _skip_string(f) -> None:
    f.seek(struct.unpack("<Q", f.read(8))[0], 1)


_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(f, kind: int) -> None:
    if kind in _SIZES:
        f.seek(_SIZES[kind], 1)
    elif kind == 8:
        _skip_string(f)
    else:  # array
        item, count = struct.unpack("<IQ", f.read(12))
        if item in _SIZES:
            f.seek(_SIZES[item] * count, 1)
        else:
            for _ in range(count):
                _skip_value(f, item)


@pytest.fixture(scope="module")
def templated_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aikit_components.providers.local_server import default_model_path

    target = tmp_path_factory.mktemp("gguf") / "gemma-with-template.gguf"
    add_chat_template(Path(default_model_path()), target, TEMPLATE)
    return target


def test_a_gguf_with_a_chat_template_goes_through_the_chat_endpoint(templated_model: Path) -> None:
    assert read_chat_template(templated_model) == TEMPLATE

    async def go():
        provider = LocalProvider(model_path=str(templated_model), **SLOW)
        try:
            assert await provider.uses_chat_template() is True
            text = await provider.complete(Request("gemma3-270m", [Message.user("Say hello.")], max_tokens=8,
                                                   temperature=0.0))
            calls = [await provider.complete(Request("gemma3-270m", [Message.user(ASKS[0])], tools=TOOLS,
                                                     max_tokens=96))]
            streamed = [e async for e in provider.stream(Request("gemma3-270m", [Message.user("Hi")], max_tokens=8))]
            return text, calls, streamed
        finally:
            await provider.aclose()
            if provider.server is not None:
                provider.server.stop()

    text, calls, streamed = run(go())
    assert text.text.strip() and text.model == "local/gemma3-270m"  # the chat endpoint answered
    for completion in calls:
        assert_well_formed(completion)
    end = streamed[-1].completion
    deltas = [e.text for e in streamed if e.kind == "text"]
    assert deltas and end.text == "".join(deltas)  # streamed chat deltas add up to the completion
    # the chat stream carries no usage: the prompt's tokens are counted all the same
    assert end.usage.input_tokens > 0 and end.usage.output_tokens > 0

"""An MCP server written with the Python SDK's low-level Server, for aikit's MCP client tests: well
behaved tools (echo, structured, fail), misbehaving ones (slow, crash, huge), one with an invalid
input schema, a tool that adds a tool and announces it (tools/list_changed), a resource and a
prompt. Run over stdio: ``python py_server.py``."""

from __future__ import annotations

import asyncio
import os
import sys

import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

EXTRA: list[types.Tool] = []

TOOLS = [
    types.Tool(name="echo", description="Echo the text back.",
               input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
    types.Tool(name="structured", description="A structured result.",
               input_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
    types.Tool(name="fail", description="Always fails (isError).", input_schema={"type": "object", "properties": {}}),
    types.Tool(name="slow", description="Sleep, then answer.",
               input_schema={"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}),
    types.Tool(name="crash", description="Exit the server in the middle of the call.",
               input_schema={"type": "object", "properties": {}}),
    types.Tool(name="huge", description="Return n characters.",
               input_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
    types.Tool(name="broken", description="Its schema is not a valid JSON Schema.",
               input_schema={"type": "object", "properties": {"a": {"type": "no-such-type"}}}),
    types.Tool(name="noisy", description="Write 2 MB to stderr in one line, then answer.",
               input_schema={"type": "object", "properties": {}}),
    types.Tool(name="grow", description="Add the tool 'extra' and announce it.",
               input_schema={"type": "object", "properties": {}}),
]


async def list_tools(ctx, params) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS + EXTRA)


def text(value: str) -> list[types.TextContent]:
    return [types.TextContent(type="text", text=value)]


async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    args = params.arguments or {}
    name = params.name
    if name == "echo":
        return types.CallToolResult(content=text(args["text"]))
    if name == "structured":
        n = args["n"]
        return types.CallToolResult(content=text(str(n * 2)), structured_content={"double": n * 2, "pid": os.getpid()})
    if name == "fail":
        return types.CallToolResult(content=text("the disk is on fire"), is_error=True)
    if name == "slow":
        await asyncio.sleep(args["seconds"])
        return types.CallToolResult(content=text("done"))
    if name == "crash":
        os._exit(3)
    if name == "huge":
        return types.CallToolResult(content=text("x" * args["n"]))
    if name == "noisy":
        sys.stderr.write("e" * 2_000_000 + "\n")
        sys.stderr.flush()
        return types.CallToolResult(content=text("quiet now"))
    if name == "grow":
        if not EXTRA:
            EXTRA.append(types.Tool(name="extra", description="Added later.",
                                    input_schema={"type": "object", "properties": {}}))
        await ctx.session.send_tool_list_changed()
        return types.CallToolResult(content=text("grown"))
    if name == "extra":
        return types.CallToolResult(content=text("extra here"))
    return types.CallToolResult(content=text(f"unknown tool {name}"), is_error=True)


async def list_resources(ctx, params) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=[types.Resource(uri="note://hello", name="hello", mime_type="text/plain")])


async def read_resource(ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=str(params.uri), mime_type="text/plain",
                                                                         text="Hello from the notes.")])


async def list_prompts(ctx, params) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=[types.Prompt(name="greet", description="Greet someone",
                                                         arguments=[types.PromptArgument(name="name", required=True)])])


async def get_prompt(ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    who = (params.arguments or {}).get("name", "you")
    return types.GetPromptResult(description="A greeting", messages=[
        types.PromptMessage(role="user", content=types.TextContent(type="text", text=f"Say hello to {who}."))])


server = Server("py-test-server", version="1", on_list_tools=list_tools, on_call_tool=call_tool,
                on_list_resources=list_resources, on_read_resource=read_resource, on_list_prompts=list_prompts,
                on_get_prompt=get_prompt)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""MCP (Model Context Protocol) for aikit, with the official ``mcp`` SDK: a client whose servers'
tools become aikit tools (:mod:`.client`), aikit's own server exposing tools, agents, missions,
RAG collections, State and Artifacts (:mod:`.server`), and the conversions between the two
worlds (:mod:`.convert`). docs/mcp.md describes both sides."""

from .client import Connection, MCPClients, ServerSpec

__all__ = ["Connection", "MCPClients", "ServerSpec"]

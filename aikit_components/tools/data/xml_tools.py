"""XML in (secure parsing: no entities, no external references)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import defusedxml.ElementTree as DefusedET
from defusedxml import (
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
    NotSupportedError,
)

from ...errors import InvalidArgument
from ..base import ToolContext, tool
from .common import MAX_DEPTH, offload, read_text_input, syntax_error, too_deep

_XML_POSITION = re.compile(r":\s*line \d+, column \d+\s*$")


def _xml_name(tag: str, strip_namespaces: bool) -> str:
    if strip_namespaces and tag.startswith("{"):
        return tag.rpartition("}")[2]
    return tag


def _xml_element(element: ET.Element, strip: bool, depth: int, source: str) -> Any:
    if depth >= MAX_DEPTH:
        raise too_deep(source)
    node: dict[str, Any] = {}
    for key, value in element.attrib.items():
        node["@" + _xml_name(key, strip)] = value
    repeated: set[str] = set()
    pieces = [element.text]
    for child in element:
        if not isinstance(child.tag, str):  # comments, processing instructions
            pieces.append(child.tail)
            continue
        key = _xml_name(child.tag, strip)
        value = _xml_element(child, strip, depth + 1, source)
        if key in node:
            if key not in repeated:
                node[key] = [node[key]]
                repeated.add(key)
            node[key].append(value)
        else:
            node[key] = value
        pieces.append(child.tail)
    text = " ".join(p.strip() for p in pieces if p and p.strip())
    if not node:
        return text if text else None
    if text:
        node["#text"] = text
    return node


def _parse_xml_text(text: str, source: str, strip_namespaces: bool) -> dict[str, Any]:
    try:
        root = DefusedET.fromstring(text, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except EntitiesForbidden as exc:
        raise InvalidArgument(
            f"XML in {source} declares the entity {exc.name!r}: entity declarations are refused because they enable "
            "entity-expansion ('billion laughs') and external-file attacks; remove the <!ENTITY ...> declarations "
            "(or the whole <!DOCTYPE ...> block)",
            details={"source": source, "rule": "xml_entities", "entity": exc.name},
        ) from None
    except (ExternalReferenceForbidden, DTDForbidden, NotSupportedError) as exc:
        raise InvalidArgument(
            f"XML in {source} refers to external resources ({exc}); they are refused: remove the <!DOCTYPE ...> "
            "block or the external reference", details={"source": source, "rule": "xml_external"},
        ) from None
    except ET.ParseError as exc:
        line, column = exc.position
        reason = _XML_POSITION.sub("", str(exc)) or "syntax error"
        raise syntax_error("XML", source, reason, line, column + 1, text) from None
    return {_xml_name(root.tag, strip_namespaces): _xml_element(root, strip_namespaces, 0, source)}


@tool(category="data", security="read", examples=[
    {"args": {"text": '<book id="7"><title>Dune</title><tag>sf</tag><tag>classic</tag></book>'},
     "result": {"book": {"@id": "7", "title": "Dune", "tag": ["sf", "classic"]}}},
])
async def parse_xml(ctx: ToolContext, text: str | None = None, path: str | None = None,
                    strip_namespaces: bool = False) -> dict[str, Any]:
    """Parse XML (inline or from a file) into nested tables, refusing entity declarations.

    Attributes become `@name` keys, text becomes `#text` (or the value itself for an element with
    neither attributes nor children), repeated child elements become lists.

    Args:
        text: The XML text itself (give this or `path`).
        path: An XML file to read, relative to the working directory (give this or `text`).
        strip_namespaces: Drop `{namespace-uri}` prefixes from element and attribute names.

    Returns:
        A table with one key, the root element's name.
    """
    content, source = await read_text_input(ctx, text, path, "XML")
    return await offload(lambda: _parse_xml_text(content, source, strip_namespaces), len(content))

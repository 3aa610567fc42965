"""Template filters ``| string`` and ``| json`` (issue 17), and their suggestion when misspelled."""

from __future__ import annotations

import pytest

from aikit_components.workflows.templates import TemplateContext, TemplateError, compile


def resolve(params: object, inputs: dict) -> object:
    return compile(params).resolve(TemplateContext(inputs=inputs, steps={}))


def test_string_and_json_filters() -> None:
    inputs = {"n": 3, "items": ["a", "b"], "flag": True}
    assert resolve({"v": "{{input.n}}"}, inputs) == {"v": 3}
    assert resolve({"v": "{{input.n | string}}"}, inputs) == {"v": "3"}
    assert resolve({"v": "{{input.flag | string}}"}, inputs) == {"v": "true"}
    assert resolve({"v": "{{input.items | json}}"}, inputs) == {"v": '["a", "b"]'}
    assert resolve({"v": "{{input.missing | default: 7 | string}}"}, inputs) == {"v": "7"}
    assert resolve({"v": "items: {{input.items | json}}"}, inputs) == {"v": 'items: ["a", "b"]'}


def test_misspelled_filter_suggests() -> None:
    with pytest.raises(TemplateError, match="did you mean 'string'"):
        compile({"v": "{{input.n | strng}}"}).resolve(TemplateContext(inputs={"n": 1}, steps={}))

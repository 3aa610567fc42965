"""jsontext.dumps_with: the same text and errors as json.dumps with the same options."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aikit_components.jsontext import dumps_with

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=20)
OPTIONS = [
    {},
    {"ensure_ascii": False},
    {"ensure_ascii": False, "sort_keys": True, "separators": (",", ":")},
    {"ensure_ascii": False, "default": str},
]


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_the_text_is_json_dumps_text(value: Any) -> None:
    for options in OPTIONS:
        assert dumps_with(**options)(value) == json.dumps(value, **options)


def test_errors_are_json_dumps_errors() -> None:
    strict = dumps_with(ensure_ascii=False, allow_nan=False)
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        strict({"x": math.nan})
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        strict({"x": {1}})
    assert dumps_with(default=str)({"x": {1}}) == json.dumps({"x": {1}}, default=str)
    assert strict("ü") == json.dumps("ü", ensure_ascii=False)

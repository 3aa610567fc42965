"""The body of a factory fixture: hand the test a function that makes things, close them all at
teardown (``yield from closing_factory(make, close)``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def closing_factory(make: Callable[P, T], close: Callable[[T], object]) -> Iterator[Callable[P, T]]:
    """Yield ``make`` as it is, except that what it makes is remembered; then ``close`` each of
    those, in the order they were made."""
    made: list[T] = []

    def remembered(*args: P.args, **kwargs: P.kwargs) -> T:
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    yield remembered
    for thing in made:
        close(thing)

"""Run asyncio-native test bodies (real `websockets` clients) on the shared reactor loop.

The reactor is Twisted's asyncio reactor, so asyncio code and Twisted code share one
loop. ``aio_test`` turns ``async def test_...`` written against asyncio into a test that
pytest-twisted waits for; inside, ``await deferred_result(d)`` waits for a Deferred.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest_twisted
from twisted.internet.defer import Deferred

T = TypeVar("T")


def aio_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> None:
        await Deferred.fromFuture(asyncio.ensure_future(fn(*args, **kwargs)))

    return pytest_twisted.ensureDeferred(wrapper)  # type: ignore[no-any-return]


async def deferred_result(d: Deferred[T]) -> T:
    return await d.asFuture(asyncio.get_running_loop())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)

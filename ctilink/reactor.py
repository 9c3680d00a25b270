"""Install Twisted's asyncio reactor, before anything imports ``twisted.internet.reactor``.

Twisted and the asyncio libraries ctilink uses (SQLAlchemy's asyncio engine, panoramisk)
then share one event loop, so there are no threads beside the reactor's.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


def install_asyncio_reactor() -> Any:
    """Install (once) and return the asyncio reactor."""
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if type(reactor).__name__ != "AsyncioSelectorReactor":
            raise RuntimeError(
                f"the {type(reactor).__name__} reactor was installed before ctilink could"
                " install the asyncio reactor"
            )
        return reactor
    from twisted.internet import asyncioreactor

    # Also the thread's current loop: code that runs before the loop starts (reactor
    # startup triggers) and schedules asyncio work must land on this loop, not a new one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    return reactor


def deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Run the asyncio coroutine ``coro`` on the reactor's loop; its result as a Deferred."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))

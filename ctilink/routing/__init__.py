"""Routing: answer a switch's route request with a destination.

``static`` holds the decision types every router speaks (``RouteQuery`` in,
``RouteDecision`` out, the ``Router`` protocol) and the simplest router, one configured
answer for every call. The FastAGI entry point (``ctilink.agi.server``) asks a ``Router``.
"""

from ctilink.routing.static import RouteDecision, RouteQuery, Router, StaticRouter

__all__ = ["RouteDecision", "RouteQuery", "Router", "StaticRouter"]

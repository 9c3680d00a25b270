"""Routing: answer a switch's route request with a destination, from the customer database.

``static`` holds the decision types every router speaks (``RouteQuery`` in,
``RouteDecision`` out, the ``Router`` protocol) and the simplest router, one configured
answer for every call. The FastAGI entry point (``ctilink.agi.server``) asks a ``Router``.

The customer database and the routing service (imported on demand, not from here):

* ``schema`` (tables; migration 0002), ``numbers`` (caller ids to E.164),
  ``reference`` (queues, calendars, skills in memory), ``directory`` (caller lookups, cache);
* ``strategies`` (pure decisions with reasons), ``service`` (``RoutingService``: the Router,
  budget and outages), ``audit`` (decisions stored and explained);
* ``interactions`` + ``spool`` (contact history, durable through outages), ``screenpop``
  (enriched pops); ``batching`` (the batched writer they share);
* ``importer`` and ``admin`` (CSV import, agents/queues/customers, the demo's seed),
  ``simulate`` (what-if replays), ``commands`` (the CLI), ``runtime`` (daemon wiring:
  ``start_routing``).
"""

from ctilink.routing.static import RouteDecision, RouteQuery, Router, Routes, StaticRouter

__all__ = ["RouteDecision", "RouteQuery", "Router", "Routes", "StaticRouter"]

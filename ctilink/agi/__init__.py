"""FastAGI: Asterisk asks ctilink where to route a call (``AGI(agi://host:4573/route,...)``).

``codec`` is the sans-I/O protocol (environment, commands, replies); ``server`` the Twisted
protocol and factory that turn one session into a route request, a routing decision and
the ``SET VARIABLE`` commands the dialplan reads.
"""

"""Configuration: one TOML file, read with :mod:`tomllib` and validated whole on load.

Theory of operation
-------------------
``load_config(path)`` reads the file and hands its text to ``parse_config``, which turns the
TOML document into frozen dataclasses (``Config`` and one class per section) or raises
``ConfigError`` with one line: the file, the key path and what was expected::

    ctilink.toml: switch[1].port: expected an integer from 1 to 65535, got 0

Each section is a declarative table mapping a key to a ``Field``: a ``Check`` (what the
value must be, for messages, and a function that validates and converts it) and a default.
A default is a raw TOML value that goes through the same check, so a relative default path
is resolved like a relative path in the file. Unknown keys are errors at every level: a
typo never passes silently. Adding a key is adding an entry; adding a switch kind is one
entry in ``switches.KINDS`` (the ``SwitchConfig`` field its options go in, its table, the
function building its options class, the keys it refuses). Kinds "csta" and "csta-xml"
share the field ``csta``, whose class is the live link's own ``CstaSettings``
(``ctilink.adapters.csta``, imported only when a CSTA switch is configured); their routing
budget is ``[routing] budget_ms`` unless the switch gives ``routing_budget_ms``.

Modules: ``model`` (what a loaded configuration is), ``checks`` (the check primitives and
table reading), ``switches`` (the ``[[switch]]`` tables, one per kind) and ``loader`` (the
other sections, the document, the entry points). Only the names below are public.

Relative paths are relative to the directory of the config file, never to the working
directory, and every path in a ``Config`` is absolute (symlinks resolved). The exception is
the inside of endpoint descriptions (``event_socket.listen``, an asterisk switch's
``fastagi``): Twisted server endpoint descriptions, used verbatim by the daemon (paths in
them are relative to the working directory). They are validated by parsing them exactly as
the daemon will (``serverFromString``) with a placeholder reactor: importing
``twisted.internet.reactor`` here would install the default reactor before the daemon
installs the asyncio one. Parsing builds the endpoint without listening, but some parsers
look at the world: ``ssl:`` reads its key and certificate files (and needs pyOpenSSL),
``systemd:`` needs the sockets systemd passed in.

Secrets are never written in the file itself. The database password comes from
``password_file`` or ``password_env`` (or, discouraged, the URL); an AMI secret only from
``secret_file`` or ``secret_env`` (a ``secret`` key is refused); a CSTA password only from
``password_file`` or ``password_env`` (a ``password`` key is refused). They are read at
load time into a ``Secret``, whose repr and str are masked; ``DatabaseConfig.url`` shows
``***``, so printing or logging a ``Config`` never shows a secret. Code that connects calls
``DatabaseConfig.connect_url()``, ``AsteriskOptions.secret.reveal()`` or
``CstaSettings.password.reveal()``.

The event socket authenticates clients by default (``[event_socket] auth = "token"``), so
a file needs ``tokens_file`` unless it says ``auth = "none"``; the token file is read at
load time too (``ctilink.screenpop.auth.TokenStore.load``), so a bad one is a
configuration error. ``default_config`` has authentication off: there is no token file to
name.
"""

from ctilink.config.loader import default_config, load_config, parse_config
from ctilink.config.model import (
    DEFAULT_LISTEN,
    DEFAULT_STATE_DIR,
    ROUTING_STRATEGIES,
    SQLITE_FILE_NAME,
    AsteriskOptions,
    Config,
    DaemonConfig,
    DatabaseConfig,
    EventSocketConfig,
    ReplayOptions,
    RoutingConfig,
    Secret,
    SwitchConfig,
)

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_STATE_DIR",
    "ROUTING_STRATEGIES",
    "SQLITE_FILE_NAME",
    "AsteriskOptions",
    "Config",
    "DaemonConfig",
    "DatabaseConfig",
    "EventSocketConfig",
    "ReplayOptions",
    "RoutingConfig",
    "Secret",
    "SwitchConfig",
    "default_config",
    "load_config",
    "parse_config",
]

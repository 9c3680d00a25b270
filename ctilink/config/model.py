"""What a loaded configuration is: frozen dataclasses, one per section, and ``Secret``.

Every path is absolute. Secrets (the database password, AMI secrets, CSTA passwords) are
``Secret`` values, whose repr and str are masked, so printing or logging a ``Config`` never
shows them. A CSTA switch's options are the live link's own ``CstaSettings``
(``ctilink.adapters.csta``), imported here for type checking only: loading a configuration
imports the CSTA stack only when a CSTA switch is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from ctilink.adapters.csta import CstaSettings

DEFAULT_STATE_DIR: Final = "ctilink-state"
DEFAULT_LISTEN: Final = "tcp:port=8765:interface=127.0.0.1"
SQLITE_FILE_NAME: Final = "ctilink.sqlite3"


class Secret:
    """A value never shown: repr and str are masked; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.reveal() == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    state_dir: Path
    log_level: str
    log_format: str


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """``url`` shows ``***`` for a password; ``connect_url()`` is the URL to connect with."""

    url: str
    password: Secret | None = None

    def __post_init__(self) -> None:
        # Built by code with the password inside the URL: move it out, so it never shows.
        url = make_url(self.url)
        if url.password is not None:
            if self.password is None:
                object.__setattr__(self, "password", Secret(url.password))
            object.__setattr__(self, "url", url.render_as_string(hide_password=True))

    def connect_url(self) -> URL:
        """The SQLAlchemy URL with the real password (its own repr still masks it)."""
        url = make_url(self.url)
        return url if self.password is None else url.set(password=self.password.reveal())

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return make_url(self.url).get_backend_name()


EVENT_SOCKET_AUTH: Final = ("token", "none")


@dataclass(frozen=True, slots=True)
class EventSocketConfig:
    """The WebSocket event socket (and the web site around it). With ``auth`` "token" every
    client presents a token of ``tokens_file`` (``ctilink.screenpop.auth``); "none" lets any
    client that can connect see every event."""

    listen: str  # Twisted server endpoint description (TLS: an ssl: endpoint)
    auth: str = "token"  # "token" or "none"
    tokens_file: Path | None = None  # required with auth "token"
    max_backlog: int = 10_000  # events queued for one slow client before it is dropped


# The routing service's strategies (ctilink.routing.strategies), in their default order.
ROUTING_STRATEGIES: Final = (
    "business_hours",
    "identify",
    "vip",
    "last_agent",
    "preferred_agent",
    "skills",
    "longest_idle",
    "overflow",
)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """How route requests are answered: the default route, the budget, and the routing
    service's strategies and lookups (``ctilink.routing``). Defaults are the file's."""

    default_queue: str | None  # the queue answered when no decision is made; None: none
    default_priority: int  # 0-100
    default_agent: str | None  # a device/agent id to route to by default; None: none
    budget_ms: int  # how long a decision may take before the default route is answered
    lookup_timeout_ms: int | None = None  # database lookups of a decision; None: budget/2
    strategies: tuple[str, ...] = ROUTING_STRATEGIES  # evaluated in this order
    default_region: str = "US"  # ISO 3166 alpha-2: how national numbers are read
    trunk_prefix: str = ""  # the PBX's outside-line prefix on caller ids; "" none
    account_keys: tuple[str, ...] = ("CUSTOMER_ACCOUNT", "account")  # IVR account data
    queue_keys: tuple[str, ...] = ("queue",)  # route data naming the queue asked for
    last_agent_days: int = 30  # 0: never route to the last agent
    tier_priority: tuple[tuple[str, int], ...] = (("vip", 10),)  # lower-case tier, priority
    closed_destination: str | None = None  # queue for closed hours when a queue has none
    overflow_queue: str | None = None  # overflow target when a queue has none
    overflow_wait_seconds: int = 0  # estimated wait beyond which to overflow; 0 never
    handle_seconds: int = 180  # average handle time when a queue has none
    cache_size: int = 10_000  # callers kept in the lookup cache
    cache_ttl_seconds: int = 60  # how long a cached caller is trusted
    refresh_seconds: int = 5  # how often directory changes (imports) are looked for
    pop_history: int = 5  # past interactions in a screen pop

    @property
    def lookup_timeout(self) -> float:
        """Seconds the lookups of one decision may take (half the budget by default)."""
        if self.lookup_timeout_ms is None:
            return self.budget_ms / 2000
        return self.lookup_timeout_ms / 1000

    @property
    def tier_priorities(self) -> dict[str, int]:
        """Tier (lower case) → queue priority."""
        return dict(self.tier_priority)


REPLAY_PROTOCOLS: Final = ("auto", "ami", "csta")


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """Recorded traces played as a switch. ``protocol`` "auto" is CSTA when every trace is
    a CSTA hex JSON Lines trace, else AMI (``ctilink.adapters.factories.resolve_replay``);
    ``port`` is the switch's TCP port inside captures, None for the protocol's usual one."""

    traces: tuple[Path, ...]
    loop: bool
    speed: float
    port: int | None
    protocol: str = "auto"  # "auto", "ami" or "csta"


@dataclass(frozen=True, slots=True)
class AsteriskOptions:
    """A live Asterisk Manager Interface link (and optionally a FastAGI server).

    Durations are seconds. ``secret`` is a ``Secret``: the repr never shows it.
    """

    host: str
    port: int
    username: str
    secret: Secret
    auth: str  # "md5" (challenge/response) or "plain"
    events: tuple[str, ...]  # AMI event classes to receive ("call", "agent", ...)
    call_data_variables: tuple[str, ...]  # channel variables carried as call data
    ping_interval: float
    ping_timeout: float  # the link is down when a Ping is not answered in time
    action_timeout: float
    connect_timeout: float
    reconnect_max_delay: float
    originate_contexts: tuple[str, ...]  # contexts make_call may originate into; () = none
    device_channel: str  # dial template with "{device}" once, e.g. "PJSIP/{device}"
    fastagi: str | None  # Twisted server endpoint of the FastAGI server; None: no server
    wrapup_seconds: float  # agent wrap-up after an ACD call; 0 = none


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    """One switch link. Exactly one options field is set: the one named after ``kind``
    (``csta`` for both "csta" and "csta-xml")."""

    name: str
    kind: str
    tenant: str
    replay: ReplayOptions | None = None
    asterisk: AsteriskOptions | None = None
    csta: CstaSettings | None = None  # kinds "csta" and "csta-xml"


@dataclass(frozen=True, slots=True)
class Config:
    source: Path | None
    daemon: DaemonConfig
    database: DatabaseConfig
    event_socket: EventSocketConfig
    switches: tuple[SwitchConfig, ...]
    routing: RoutingConfig

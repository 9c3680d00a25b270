"""The routing service's keys in [routing]: defaults, values, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctilink.config import ROUTING_STRATEGIES, RoutingConfig

from .configs import config_dir, error, load


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return config_dir(tmp_path, monkeypatch)


def test_defaults(here: Path) -> None:
    routing = load("").routing
    assert routing == RoutingConfig(None, 0, None, 300)
    assert routing.strategies == ROUTING_STRATEGIES
    assert routing.lookup_timeout == 0.15  # half the budget
    assert routing.tier_priorities == {"vip": 10}
    assert (routing.default_region, routing.trunk_prefix) == ("US", "")
    assert routing.account_keys == ("CUSTOMER_ACCOUNT", "account")


def test_values(here: Path) -> None:
    routing = load(
        """
        [routing]
        budget_ms = 500
        lookup_timeout_ms = 120
        strategies = ["vip", "business_hours", "longest_idle"]
        default_region = "FR"
        trunk_prefix = "0"
        account_keys = ["ACCOUNT"]
        queue_keys = ["arg_1", "queue"]
        last_agent_days = 0
        tier_priority = { VIP = 50, Gold = 20, silver-plus = 5 }
        closed_destination = "closed"
        overflow_queue = "overflow"
        overflow_wait_seconds = 240
        handle_seconds = 300
        cache_size = 0
        cache_ttl_seconds = 5
        refresh_seconds = 60
        pop_history = 0
        """
    ).routing
    assert routing.lookup_timeout == 0.12
    assert routing.strategies == ("vip", "business_hours", "longest_idle")
    assert routing.tier_priority == (("gold", 20), ("silver-plus", 5), ("vip", 50))
    assert routing.queue_keys == ("arg_1", "queue")
    assert (routing.default_region, routing.trunk_prefix, routing.last_agent_days) == ("FR", "0", 0)
    assert (routing.closed_destination, routing.overflow_queue) == ("closed", "overflow")
    assert (routing.overflow_wait_seconds, routing.handle_seconds) == (240, 300)
    assert (routing.cache_size, routing.cache_ttl_seconds, routing.refresh_seconds) == (0, 5, 60)
    assert routing.pop_history == 0
    assert load("[routing]\nstrategies = []\n").routing.strategies == ()


ONE_OF = (
    'one of "business_hours", "identify", "vip", "last_agent", "preferred_agent", "skills",'
    ' "longest_idle", "overflow"'
)
REGION = "expected a region code (ISO 3166 alpha-2 in capitals, e.g. US or FR), got"
ERRORS = [
    (
        "strategy unknown",
        'strategies = ["vip", "random"]',
        f'strategies[1]: expected {ONE_OF}, got "random"',
    ),
    (
        "strategy twice",
        'strategies = ["vip", "vip"]',
        'strategies[1]: duplicate "vip" (also at index 0)',
    ),
    (
        "strategies not array",
        'strategies = "vip"',
        f'strategies: expected an array of {ONE_OF}, got "vip"',
    ),
    (
        "lookup over budget",
        "budget_ms = 200\nlookup_timeout_ms = 200",
        "lookup_timeout_ms: expected an integer less than budget_ms (200), got 200",
    ),
    (
        "lookup zero",
        "lookup_timeout_ms = 0",
        "lookup_timeout_ms: expected an integer from 1 to 4999, got 0",
    ),
    (
        "region lower case",
        'default_region = "fr"',
        f'default_region: {REGION} "fr"',
    ),
    (
        "region unknown",
        'default_region = "UK"',
        f'default_region: {REGION} "UK"',
    ),
    ("trunk not digits", 'trunk_prefix = "+"', 'trunk_prefix: expected 0-4 digits, got "+"'),
    ("trunk integer", "trunk_prefix = 9", "trunk_prefix: expected 0-4 digits, got 9"),
    (
        "account key",
        'account_keys = ["a b"]',
        'account_keys[0]: expected a call data name (1-64 of A-Z a-z 0-9 _ -), got "a b"',
    ),
    ("days", "last_agent_days = -1", "last_agent_days: expected an integer from 0 to 3650, got -1"),
    (
        "tier priority too big",
        "tier_priority = { VIP = 101 }",
        "tier_priority.VIP: expected an integer from 0 to 100, got 101",
    ),
    (
        "tier name",
        'tier_priority = { "very important" = 1 }',
        'tier_priority."very important": expected tier names (1-40 of A-Z a-z 0-9 _ -), got'
        ' "very important"',
    ),
    (
        "tier twice",
        "tier_priority = { VIP = 1, vip = 2 }",
        'tier_priority.vip: duplicate of "VIP" (case is ignored)',
    ),
    (
        "tier not table",
        "tier_priority = 10",
        "tier_priority: expected a table of tier names (1-40 of A-Z a-z 0-9 _ -) to an integer"
        " from 0 to 100, got 10",
    ),
    (
        "closed destination",
        'closed_destination = "a.b"',
        'closed_destination: expected a queue name (1-80 of A-Z a-z 0-9 _ -), got "a.b"',
    ),
    (
        "handle zero",
        "handle_seconds = 0",
        "handle_seconds: expected an integer from 1 to 86400, got 0",
    ),
    (
        "refresh",
        "refresh_seconds = 0",
        "refresh_seconds: expected an integer from 1 to 3600, got 0",
    ),
    ("pops", "pop_history = 101", "pop_history: expected an integer from 0 to 100, got 101"),
]


@pytest.mark.parametrize(("line", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(here: Path, line: str, expected: str) -> None:
    assert error(f"[routing]\n{line}\n") == f"ctilink.toml: routing.{expected}"

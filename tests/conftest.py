"""Shared test setup.

* The Twisted reactor is the asyncio one (``--reactor=asyncio`` in pyproject), as in the
  daemon.
* A test fails if anything logs at ERROR or above, unless it asks for ``logged_errors``
  and so takes charge of asserting on them. Twisted's own log (unhandled errors in
  Deferreds) is routed to stdlib logging so it counts too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from ctilink.logs import route_twisted_to_stdlib

# Property tests check behaviour, not speed: no per-example deadline (CI machines are busy).
settings.register_profile("ctilink", deadline=None)
settings.load_profile("ctilink")

FIXTURES = Path(__file__).parent / "fixtures"
TRACES = FIXTURES / "pbx-traces"
# Every AMI capture among the fixtures (the FastAGI side of a call is another protocol).
AMI_TRACES = sorted(
    p
    for p in TRACES.iterdir()
    if p.suffix in (".jsonl", ".pcapng") and not p.name.startswith("fastagi")
)


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.claimed = False

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def _fail_on_logged_errors() -> Iterator[_ErrorCollector]:
    route_twisted_to_stdlib()
    collector = _ErrorCollector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
    if collector.records and not collector.claimed:
        lines = "\n".join(f"  {r.levelname} {r.name}: {r.getMessage()}" for r in collector.records)
        pytest.fail(f"errors were logged during the test:\n{lines}", pytrace=False)


@pytest.fixture
def logged_errors(_fail_on_logged_errors: _ErrorCollector) -> list[logging.LogRecord]:
    """The ERROR+ records logged during the test; the test must assert on them itself."""
    _fail_on_logged_errors.claimed = True
    return _fail_on_logged_errors.records

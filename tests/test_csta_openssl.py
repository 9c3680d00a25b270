"""Every PDU ctilink sends (as the CTI application, and as the switch simulator) is accepted
whole by an independent BER decoder: ``openssl asn1parse -inform DER``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ctilink.csta import CstaMessage, acse, rose
from tests.fixtures.csta import acse as acse_fixtures
from tests.fixtures.csta import events, services
from tests.fixtures.csta.common import Golden

OPENSSL = shutil.which("openssl")
ALL = acse_fixtures.GOLDEN + services.GOLDEN + events.GOLDEN
_TOP = re.compile(r"^\s*0:d=0\s+hl=(\d+)\s+l=\s*(\d+)\s+cons:", re.MULTILINE)

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def encoded(golden: Golden) -> bytes:
    if isinstance(golden.value, CstaMessage):
        return rose.encode(golden.value)
    return acse.encode(golden.value)


@pytest.mark.parametrize("golden", ALL, ids=[golden.name for golden in ALL])
def test_openssl_parses_the_whole_pdu(golden: Golden, tmp_path: Path) -> None:
    pdu = encoded(golden)
    path = tmp_path / "pdu.der"
    path.write_bytes(pdu)
    assert OPENSSL is not None
    done = subprocess.run(
        [OPENSSL, "asn1parse", "-inform", "DER", "-in", str(path), "-i"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "error" not in (done.stdout + done.stderr).lower()
    top = _TOP.search(done.stdout)
    assert top is not None, done.stdout
    # One constructed value at depth 0 that spans the file exactly: nothing left over.
    assert int(top[1]) + int(top[2]) == len(pdu)
    assert len(re.findall(r"d=0 ", done.stdout)) == 1

"""A rendezvous port for the 2-process tests, outside the range the system hands out itself.

Lightning's spawn launcher picks ``MASTER_PORT`` by binding port 0, which returns a port from
the ephemeral range, and keeps it in ``os.environ`` for the rest of the session; between two
runs any process that binds an ephemeral port (another test session, gloo's own sockets) can
take it, and the next run fails to rendezvous. A port below that range, checked free, and
restored after each test, avoids both.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

LOW, HIGH = 20000, 32000  # below Linux's default ephemeral range (32768-60999)


def free_port() -> int:
    """A port in ``[LOW, HIGH)`` that nothing listens on now."""
    for _ in range(100):
        port = random.randrange(LOW, HIGH)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in [{LOW}, {HIGH})")


@pytest.fixture(autouse=True)
def own_master_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give each test its own ``MASTER_PORT`` (and drop it afterwards)."""
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    yield

"""Free TCP ports on loopback for the lab's servers: the one helper of the tests and benches."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range start (32768 on Linux), so that a twin port stays in
# range; above the ports that system services commonly hold.
_TWIN_LOW = 20000
_HIGHEST_PORT = 65535


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(twin_offset: int = 0) -> int:
    """A port on 127.0.0.1 that nothing listens on.

    With `twin_offset`, port + twin_offset is free too: Redis Cluster listens on
    port + 10000 for its bus, and RabbitMQ derives its distribution port the same way.
    The kernel's own choice (ephemeral, up to 65535) could leave no room for the twin,
    so such a pair is drawn from below 65535 - twin_offset instead.
    """
    if not twin_offset:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port
    highest = _HIGHEST_PORT - twin_offset
    if highest < _TWIN_LOW:
        raise ValueError(f"twin_offset {twin_offset} leaves no port pair above {_TWIN_LOW}")
    while True:
        port = random.randint(_TWIN_LOW, highest)
        if bindable(port) and bindable(port + twin_offset):
            return port

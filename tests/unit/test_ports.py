"""free_port: a port nothing listens on, and with a twin offset a free pair."""

from __future__ import annotations

import socket

import pytest

from phaseshift.lab.ports import bindable, free_port


def test_a_free_port_is_bindable_until_a_server_listens_on_it() -> None:
    port = free_port()
    assert bindable(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert not bindable(port)


def test_a_twin_offset_gives_a_pair_of_free_ports_in_range() -> None:
    for _ in range(20):
        port = free_port(twin_offset=10000)
        assert port + 10000 <= 65535
        assert bindable(port) and bindable(port + 10000)


def test_an_offset_that_leaves_no_pair_is_refused() -> None:
    with pytest.raises(ValueError, match="twin_offset"):
        free_port(twin_offset=60000)

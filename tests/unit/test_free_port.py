"""The test servers' ports lie below the kernel's ephemeral range, where no outgoing
connection can take one between the check and the server's bind."""

from __future__ import annotations

import socket

from benchmarks.server import _ephemeral_range, free_port


def test_a_free_port_is_below_the_ephemeral_range_and_bindable():
    low, high = _ephemeral_range()
    assert 1024 <= low < high
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= p < low for p in ports)
    assert len(ports) > 1  # chosen at random, so two workers rarely pick the same one
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports.pop()))

"""Ports on 127.0.0.1: free ones handed out once, taken ones named with their holder."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from aicd.deploy.ports import allocate_port, check_port_free, port_holder, port_is_free
from aicd.errors import ConfigError, ConflictError


def test_allocated_ports_are_free_and_never_handed_out_twice() -> None:
    with ThreadPoolExecutor(8) as pool:
        ports = list(pool.map(lambda _: allocate_port(), range(80)))
    assert len(set(ports)) == 80
    for port in ports[:10]:
        with socket.socket() as sock:  # a server can listen there
            sock.bind(("127.0.0.1", port))
            sock.listen()
    assert allocate_port(exclude=ports) not in ports


def test_a_taken_port_is_refused_with_its_holder() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = int(holder.getsockname()[1])
        assert not port_is_free(taken)
        found = port_holder(taken)
        assert found is not None and found[0] == os.getpid()
        with pytest.raises(ConflictError) as caught:
            check_port_free(taken)
        message = str(caught.value)
        assert message.startswith(f"port {taken} on 127.0.0.1 is already in use by pid {os.getpid()} (")
        assert "choose another port" in message
    check_port_free(taken)  # free again once closed


def test_a_port_on_all_interfaces_counts_as_taken() -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        with pytest.raises(ConflictError):
            check_port_free(int(holder.getsockname()[1]))


@pytest.mark.parametrize("port", [0, -1, 65536, True, "80"])
def test_not_a_port(port: object) -> None:
    with pytest.raises(ConfigError, match="is not a TCP port number"):
        check_port_free(port)  # type: ignore[arg-type]

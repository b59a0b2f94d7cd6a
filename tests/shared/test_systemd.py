"""sd_notify over a real datagram socket, playing systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.systemd import Notifier


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_ready_status_stopping_arrive_as_datagrams(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("3 connections")
    notifier.status("3 connections")  # unchanged: not sent again
    notifier.status("4 connections")
    notifier.stopping()
    received = [sock.recv(4096).decode() for _ in range(3)]
    assert received == [
        "READY=1\nSTATUS=3 connections",
        "STATUS=4 connections",
        "STOPPING=1\nSTATUS=draining client connections",
    ]
    notifier.close()


def test_the_watchdog_is_fed_twice_per_period(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    now = [0.0]
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env, clock=lambda: now[0])
    assert notifier.watchdog_interval == 5.0
    for t in (0.0, 1.0, 4.9, 5.0, 9.0, 10.0):
        now[0] = t
        notifier.watchdog()
    sock.settimeout(0.5)
    pings = []
    try:
        while True:
            pings.append(sock.recv(64))
    except TimeoutError:
        pass
    assert pings == [b"WATCHDOG=1"] * 3  # at 0, 5 and 10
    notifier.close()


def test_without_notify_socket_nothing_happens() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.watchdog()


def test_a_watchdog_for_another_process_is_not_ours() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    notifier = Notifier(env)
    assert notifier.watchdog_interval is None
    notifier.close()

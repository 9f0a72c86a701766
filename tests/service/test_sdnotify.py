"""supportd.service.sdnotify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supportd.service import sdnotify

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="AF_UNIX/Linux only")


def _receive(sock: socket.socket) -> str:
    sock.settimeout(2)
    return sock.recv(4096).decode()


@pytest.fixture
def path_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    # A short directory of our own: AF_UNIX paths are limited to ~108 bytes and pytest's tmp_path
    # can be longer than that.
    with tempfile.TemporaryDirectory(prefix="sdn-") as folder:
        path = str(Path(folder) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            monkeypatch.setenv("NOTIFY_SOCKET", path)
            yield sock


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"supportd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield sock


def test_ready_arrives(path_socket: socket.socket) -> None:
    assert sdnotify.ready() is True
    assert _receive(path_socket) == "READY=1"


def test_watchdog_arrives(path_socket: socket.socket) -> None:
    assert sdnotify.watchdog() is True
    assert _receive(path_socket) == "WATCHDOG=1"


def test_status_arrives_on_one_line(path_socket: socket.socket) -> None:
    assert sdnotify.status("polling imap.example.com\n3 new") is True
    assert _receive(path_socket) == "STATUS=polling imap.example.com 3 new"


def test_stopping_arrives(path_socket: socket.socket) -> None:
    assert sdnotify.stopping() is True
    assert _receive(path_socket) == "STOPPING=1"


def test_reloading_carries_monotonic_usec(path_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = _receive(path_socket).split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket(abstract_socket: socket.socket) -> None:
    assert sdnotify.notify("READY=1\nSTATUS=up") is True
    assert _receive(abstract_socket) == "READY=1\nSTATUS=up"


def test_no_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert sdnotify.watchdog() is False


def test_empty_socket_variable_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sdnotify.ready() is False


def test_missing_socket_returns_false_without_raising(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.ready() is False


def test_missing_abstract_socket_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", f"@supportd-nobody-{os.getpid()}-{time.monotonic_ns()}")
    assert sdnotify.watchdog() is False


def test_unsupported_address_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False


def test_nul_in_path_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    # os.environ cannot hold a NUL: replace the mapping the module reads, for this test only.
    monkeypatch.setattr(os, "environ", {"NOTIFY_SOCKET": "/tmp/a\0b"})
    assert sdnotify.ready() is False


def test_watchdog_interval_for_us(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 30.0


def test_watchdog_interval_without_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() == 1.5


def test_watchdog_interval_for_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None


@pytest.mark.parametrize("usec", [None, "", "0", "-5", "sixty"])
def test_watchdog_interval_off_or_garbage(
    monkeypatch: pytest.MonkeyPatch, usec: str | None
) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    if usec is None:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert sdnotify.watchdog_interval() is None


def test_watchdog_interval_garbage_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", "me")
    assert sdnotify.watchdog_interval() is None

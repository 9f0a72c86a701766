"""systemd notifications (sd_notify) without a dependency.

Under ``Type=notify`` systemd hands the service a datagram socket in ``$NOTIFY_SOCKET``; the
daemon tells it when it is ready, reloading or stopping, what it is doing (``STATUS=``), and that
it is still alive (``WATCHDOG=1``). Outside systemd (a terminal, the tests) every call is a
harmless no-op that returns False. Nothing here ever raises: a lost notification must not take
the daemon down.
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = [
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
]

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes | None:
    """The socket address for ``$NOTIFY_SOCKET``: a path, or an abstract name for ``@name``."""
    if raw.startswith("@"):
        # Linux abstract namespace: a leading NUL byte instead of the "@".
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # systemd also documents vsock:CID:PORT; supportd never runs in a VM-forwarded setup.
    return None


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; True if it was sent.

    Returns False, without raising, when not started by systemd (no ``$NOTIFY_SOCKET``) or when
    sending fails; failures are logged at debug level.
    """
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw:
        return False
    address = _address(raw)
    if address is None:
        log.debug("sd_notify: unsupported NOTIFY_SOCKET %r", raw)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except (OSError, ValueError, UnicodeError) as exc:
        log.debug("sd_notify: could not send %r to %r: %s", message, raw, exc)
        return False
    return True


def ready() -> bool:
    """Startup finished: systemd marks the unit active (``systemctl start`` returns)."""
    return notify("READY=1")


def reloading() -> bool:
    """A reload (SIGHUP) began; call ``ready()`` when it is done.

    systemd 253+ (``Type=notify-reload``) wants ``MONOTONIC_USEC`` with it; 252 ignores it.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    """Shutdown began."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """One line shown by ``systemctl status`` (newlines are flattened)."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog() -> bool:
    """Still alive: reset the ``WatchdogSec=`` timer."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """How often to call ``watchdog()``, in seconds: half of ``$WATCHDOG_USEC``.

    None when the watchdog is off, or when ``$WATCHDOG_PID`` names another process (the
    variables were inherited from a parent and are not meant for us).
    """
    raw_usec = os.environ.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = os.environ.get("WATCHDOG_PID")
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000

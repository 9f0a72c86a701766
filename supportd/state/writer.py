"""One writer for the state: the running daemon. Commands hand it their change, or hold the lock.

Two processes that each keep a copy of the state and write it disagree about what is true: a
ticket closed by ``supportd resolve`` was open again in the daemon's copy, and the customer's
"thanks" to the "sorted" mail opened a new ticket. So exactly one process writes:

* ``supportd run`` holds ``writer.lock`` (flock) for as long as it runs, with "daemon PID" in it.
* A command that changes the state (``resolve``, ``pending drop``, ``digest --send``) writes its
  request as a small JSON file into ``requests/`` in the state folder. The daemon notices it
  within a second, applies requests in the order they came, on its own current state, commits,
  and answers in ``requests/NAME.answer``; the command prints the answer.
* With no daemon running, the command takes ``writer.lock`` itself ("command PID") and applies
  the same change with the same code; a daemon starting meanwhile waits for it.

State files keep their owner. Run as root on a state folder that belongs to another user (the
service's, with systemd's ``DynamicUser``), a command becomes that user before it touches
anything, or, where it cannot, refuses and prints the exact command to use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pwd
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from supportd.base.config import Config
from supportd.base.errors import StateError

LOCK_FILE = "writer.lock"
REQUESTS = "requests"
ANSWER_SUFFIX = ".answer"
LOCK_WAIT_SECONDS = 30.0
ANSWER_WAIT_SECONDS = 60.0

Request = dict[str, Any]
Answer = dict[str, Any]


# ---------------------------------------------------------------- who may write


def _open_lock(state_dir: Path) -> int:
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"cannot use the state folder {state_dir}: {exc.strerror}{_owner_hint(state_dir)}") from exc


def _holder(fd: int) -> str:
    """'daemon 4242', 'command 4343', or '' (written by whoever holds the lock)."""
    try:
        return os.pread(fd, 64, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def _try_lock(fd: int, who: str) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{who} {os.getpid()}\n".encode(), 0)
    return True


@contextlib.contextmanager
def writer_lock(state_dir: Path, who: str, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Be the one writer of ``state_dir`` (``who`` is 'daemon' or 'command'); waits ``wait`` s for a holder."""
    fd = _open_lock(state_dir)
    deadline = time.monotonic() + wait
    try:
        while not _try_lock(fd, who):
            # A short command is waited for; a running daemon is not (it may run for months).
            if time.monotonic() > deadline or _holder(fd).startswith("daemon"):
                holder = _holder(fd) or "another supportd process"
                what = "supportd is already running" if holder.startswith("daemon") else "a supportd command is busy"
                raise StateError(f"{what} on {state_dir} ({holder}); one process writes the state at a time")
            time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def running_daemon(state_dir: Path) -> int | None:
    """The pid of the daemon that holds ``state_dir``'s writer lock, or None when none runs."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            who, _, pid = _holder(fd).partition(" ")
            return int(pid) if who == "daemon" and pid.isdigit() else None
        return None
    finally:
        os.close(fd)


def change_state(state_dir: Path, request: Request, apply_here: Callable[[Request], Answer],
                 wait: float = ANSWER_WAIT_SECONDS) -> Answer:
    """Hand ``request`` to the running daemon, or apply it here (``apply_here``) as the one writer."""
    deadline = time.monotonic() + wait
    fd = _open_lock(state_dir)
    try:
        while True:
            if _try_lock(fd, "command"):
                return apply_here(request)
            if _holder(fd).startswith("daemon"):
                return ask_daemon(state_dir, request, deadline)
            if time.monotonic() > deadline:
                raise StateError(f"a supportd command ({_holder(fd)}) holds {state_dir}; try again in a moment")
            time.sleep(0.1)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the request folder


def ask_daemon(state_dir: Path, request: Request, deadline: float) -> Answer:
    folder = state_dir / REQUESTS
    folder.mkdir(mode=0o700, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}.json"  # names sort in the order the requests came
    temp = folder / f".{name}.tmp"
    temp.write_bytes(orjson.dumps(request))
    temp.rename(folder / name)
    answer_path = folder / (name + ANSWER_SUFFIX)
    while time.monotonic() < deadline:
        if answer_path.exists():
            answer: Answer = orjson.loads(answer_path.read_bytes())
            answer_path.unlink()
            return answer
        time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        (folder / name).unlink()
        return {"ok": False, "text": "the running supportd did not take the request within "
                                     f"{ANSWER_WAIT_SECONDS:.0f} s; nothing was changed (see: supportd status)"}
    return {"ok": False, "text": "the running supportd took the request but has not answered yet; "
                                 "see the log (journalctl -u supportd) and supportd status"}


def waiting_requests(state_dir: Path) -> list[Path]:
    """Requests not yet applied, oldest first (cheap: one directory listing)."""
    try:
        names = os.listdir(state_dir / REQUESTS)
    except FileNotFoundError:
        return []
    return [state_dir / REQUESTS / n for n in sorted(names) if n.endswith(".json") and not n.startswith(".")]


def take_request(path: Path) -> Request:
    try:
        request = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return {"kind": "unreadable", "error": str(exc)}
    return request if isinstance(request, dict) else {"kind": "unreadable", "error": "not a JSON object"}


def answer_request(path: Path, answer: Answer) -> None:
    """The answer first, then the request goes: a crash between them repeats an idempotent change."""
    temp = path.with_name(f".{path.name}{ANSWER_SUFFIX}.tmp")
    temp.write_bytes(orjson.dumps(answer))
    temp.rename(path.with_name(path.name + ANSWER_SUFFIX))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# ---------------------------------------------------------------- acting as the state folder's owner


def act_as_state_owner(config: Config) -> Config:
    """Run as root on a state folder owned by another user: become that user, or refuse.

    Returns the config to use: its ``state_dir`` may become relative (the folder, entered before
    the switch) where the path itself is closed to that user, as systemd's ``/var/lib/private``
    is for a ``DynamicUser`` service.
    """
    state = config.state_dir
    if os.geteuid() != 0:
        return config
    try:
        st = state.stat()
    except FileNotFoundError:
        return config
    if st.st_uid == 0:
        return config
    try:
        os.chdir(state)
        os.setgroups([])
        os.setgid(st.st_gid)
        os.setuid(st.st_uid)
    except OSError as exc:
        raise StateError(f"{state} belongs to uid {st.st_uid}, and this command runs as root but could not "
                         f"switch to that user ({exc.strerror}); files it wrote would lock the service out. "
                         f"Run it as the folder's owner: {as_owner_command(st.st_uid, st.st_gid)}") from exc
    if os.access(state, os.W_OK | os.X_OK):
        return config
    return dataclasses.replace(config, state_dir=Path(os.curdir))


def as_owner_command(uid: int, gid: int) -> str:
    """This very command, run as ``uid``: runuser for a named user, systemd-run for a bare uid."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        argv[0:1] = [sys.executable, "-m", "supportd"]
    elif argv:
        argv[0] = os.path.abspath(argv[0]) if os.sep in argv[0] else argv[0]
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return shlex.join(["systemd-run", f"--uid={uid}", f"--gid={gid}", "--pipe", "--wait", "--quiet", *argv])
    return shlex.join(["runuser", "-u", name, "--", *argv])


def _owner_hint(state_dir: Path) -> str:
    try:
        st = state_dir.stat()
    except OSError:
        return ""
    if st.st_uid == os.geteuid():
        return ""
    return f"; it belongs to uid {st.st_uid}: {as_owner_command(st.st_uid, st.st_gid)}"

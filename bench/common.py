"""What the benchmarks share: real mail servers on loopback, a config for them, customer mail, timing.

Every benchmark runs against a real Dovecot and a real aiosmtpd (``supportd_testing.localmail``), with all
state in one temp folder that is removed afterwards. supportd itself runs as a subprocess
(``supportd run`` / ``supportd once``) wherever the figure is about the process a shop runs.
"""

from __future__ import annotations

import compileall
import contextlib
import email.policy
import email.utils
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from supportd import __version__
from supportd_testing.localmail import (
    LOCAL_OWNER,
    LOCAL_SUPPORT,
    Dovecot,
    MailUser,
    ReceivedMail,
    SmtpSink,
    write_supportd_config,
)

REPO = Path(__file__).resolve().parents[1]
# aiosmtpd logs a traceback when a client drops a connection without QUIT; not a benchmark result.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)
SUPPORT = LOCAL_SUPPORT
OWNER = LOCAL_OWNER
SUPPORT_USER = MailUser(SUPPORT, "support-secret")

# What customers write most: a delivery question, a broken item, a general question. Each gets an
# acknowledgment (none is an irreversible request, which would get a confirmation request instead).
BODIES = (
    ("Where is my order?", "Hello,\n\nmy order {order} has not arrived yet. Could you check where it is?\n\n"
     "Thanks,\n{name}\n"),
    ("Broken mug", "Hi there,\n\nthe mug I ordered (order {order}) arrived broken, the handle is cracked.\n"
     "Can you send a new one?\n\nBest regards\n{name}\n"),
    ("Question about sizes", "Good morning,\n\ndo the shirts run small? I usually wear M and want to order "
     "two for my brother.\n\n{name}\n\n--\n{name}\nSent from my phone\n"),
)


def customer_mail(number: int, tag: str = "bench") -> bytes:
    """Customer number ``number``'s email (CRLF, a distinct sender and Message-ID each)."""
    subject, body = BODIES[number % len(BODIES)]
    name = f"Customer {number}"
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = f"{name} <customer{number}@example.org>"
    msg["To"] = f"Example Shop <{SUPPORT}>"
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<{tag}.{number}.{time.time_ns()}@example.org>"
    msg.set_content(body.format(order=77000 + number % 1000, name=name))
    return msg.as_bytes()


@dataclass
class Servers:
    """A Dovecot with the support mailbox, an SMTP sink, and supportd's config for both."""

    root: Path
    dovecot: Dovecot
    sink: SmtpSink

    @property
    def config_path(self) -> Path:
        return self.root / "supportd.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def write_config(self, **sections: dict[str, Any]) -> Path:
        """supportd.yaml for these servers; each keyword adds to (or overrides keys of) a section."""
        return write_supportd_config(self.root, self.dovecot, self.sink, SUPPORT_USER, sections)

    def imap(self) -> Any:
        """A logged-in IMAPClient for the support mailbox (log it out when done)."""
        return self.dovecot.connect(SUPPORT_USER)


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """Start Dovecot and the SMTP sink in a fresh short temp folder; stop and remove all afterwards."""
    root = Path(tempfile.mkdtemp(prefix="sdb-", dir="/tmp"))
    root.chmod(0o755)  # Dovecot's mail user (nobody, when we are root) must reach the mail folder
    dovecot = Dovecot(root / "dovecot", users=[SUPPORT_USER])
    sink = SmtpSink()
    try:
        dovecot.start()
        sink.start()
        yield Servers(root=root, dovecot=dovecot, sink=sink)
    finally:
        sink.stop()
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)


def read_ahead_limits(processes: int | None) -> dict[str, dict[str, Any]]:
    """``write_config`` keywords for ``limits.read_ahead_processes`` (none: the default)."""
    return {} if processes is None else {"limits": {"read_ahead_processes": processes}}


def append_many(client: Any, messages: Sequence[bytes], chunk: int = 250) -> None:
    """Put ``messages`` in INBOX fast: MULTIAPPEND, ``chunk`` messages per command."""
    for start in range(0, len(messages), chunk):
        client.multiappend("INBOX", list(messages[start : start + chunk]))


def wait_for_mail_to(sink: SmtpSink, address: str, after: int, timeout: float) -> ReceivedMail:
    """The first mail to ``address`` among those the sink received after the first ``after``."""
    deadline = time.monotonic() + timeout
    count = after + 1
    while True:
        received = sink.wait_for(count, max(0.0, deadline - time.monotonic()))
        for mail in received[after:]:
            if address in mail.rcpt_tos:
                return mail
        count = len(received) + 1


def supportd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "supportd", *args]


def child_env() -> dict[str, str]:
    """The environment for supportd subprocesses: this checkout first on the import path.

    The checkout's modules are byte-compiled first, as ``pip install`` does for an installed
    package (and did for the peer in bench/peer.py): under PYTHONDONTWRITEBYTECODE (set on this
    machine) every run would otherwise compile supportd's source again, 0.14 s of a 0.75 s start.
    """
    compileall.compile_dir(REPO / "supportd", quiet=1)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


@dataclass(frozen=True)
class Finished:
    """A supportd subprocess that ran to its end."""

    returncode: int
    seconds: float
    max_rss_kb: int
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # user + system time of the process and of the children it reaped (wait4's rusage)
    children_rss_kb: int = 0  # the peak RSS of its child processes (supportd's read-ahead), summed
    children_cpu_seconds: float = 0.0  # the part of ``cpu_seconds`` that its reaped children used


def run_measured(command: list[str], log_dir: Path, timeout: float, env: dict[str, str] | None = None) -> Finished:
    """Run ``command``; its wall time and its own peak RSS.

    The peak is the process's ``VmHWM`` (/proc/PID/status), read while it runs: ``wait4``'s
    ``ru_maxrss`` is no good here, since Linux starts a child's figure at its parent's RSS (a
    ``python -c pass`` measured 13 MB from a small parent and 213 MB from one holding 200 MB), and
    this process holds Dovecot clients, the SMTP sink's mail and seeded state. ``env`` defaults to
    ``child_env()`` (supportd from this checkout).
    """
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   env=child_env() if env is None else env)
        status, usage, watched = _wait4(process, timeout)
        seconds = time.perf_counter() - started
    returncode = os.waitstatus_to_exitcode(status)
    process.returncode = returncode  # reaped by wait4: tell Popen, or it waits again
    return Finished(returncode, seconds, watched.peak_kb or usage.ru_maxrss, out_path.read_text(errors="replace"),
                    err_path.read_text(errors="replace"), usage.ru_utime + usage.ru_stime,
                    sum(watched.children_kb.values()), watched.children_cpu)


def group_cpu_seconds(pid: int) -> float:
    """User + system time of process ``pid`` and of its children it has reaped (/proc/PID/stat), e.g. a
    Dovecot master and the imap processes of the logins that have ended; 0.0 where it cannot be read."""
    return sum(_stat_cpu_seconds(pid))


def _stat_cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime + stime, cutime + cstime) of process ``pid``: its own CPU, and its reaped children's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    ticks = os.sysconf("SC_CLK_TCK")
    return (utime + stime) / ticks, (cutime + cstime) / ticks


def own_cpu_seconds() -> float:
    """This process's user + system time (for an SMTP sink running in one of its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class _Watched:
    """What ``_wait4`` read of a process in /proc while it ran."""

    peak_kb: int = 0  # its last VmHWM (0 if never read)
    children_kb: dict[int, int] = field(default_factory=dict)  # each child's last VmHWM, by PID
    children_cpu: float = 0.0  # CPU seconds of the children it had reaped (cutime + cstime), last read


def _wait4(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, resource.struct_rusage, _Watched]:
    """Wait for ``process``; its status, its rusage, and its and its children's peak RSS and CPU.

    A child's CPU is in the rusage once the process has reaped it, its memory is not (see above):
    each child's VmHWM is read from /proc (looked for every ``CHILDREN_EVERY``). A spawned child's
    VmHWM is its own since its ``exec``: the parent's pages are not in it.
    """
    deadline = time.monotonic() + timeout
    watched = _Watched()
    status_file = Path(f"/proc/{process.pid}/status")
    looked = 0.0
    while True:
        watched.peak_kb = max(watched.peak_kb, _vm_hwm_kb(status_file))
        if time.monotonic() - looked > CHILDREN_EVERY:
            looked = time.monotonic()
            children = watched.children_kb
            children.update((pid, 0) for pid in _children(process.pid) if pid not in children)
            for pid in children:
                children[pid] = max(children[pid], _vm_hwm_kb(Path(f"/proc/{pid}/status")))
        if watched.children_kb:  # read at each look: a child is often reaped just before its parent ends
            watched.children_cpu = max(watched.children_cpu, _stat_cpu_seconds(process.pid)[1])
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid == process.pid:
            return status, usage, watched
        if time.monotonic() > deadline:
            process.kill()
            _pid, status, usage = os.wait4(process.pid, 0)
            raise TimeoutError(f"{' '.join(command_name(process))} did not finish within {timeout} s")
        time.sleep(0.002)


CHILDREN_EVERY = 0.2  # seconds between looks for children (a scan of /proc: ~1 ms of this process)


def _children(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (/proc/PID/task/*/children is not in every kernel)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _vm_hwm_kb(status_file: Path) -> int:
    """The process's own peak RSS so far (0 once it has exited, or where /proc has no such line)."""
    try:
        for line in status_file.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def command_name(process: subprocess.Popen[bytes]) -> list[str]:
    args = process.args
    return [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank; the max for 1.0)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of ``seconds``, in milliseconds (one decimal)."""
    def ms(value: float) -> float:
        return round(value * 1000, 1)

    return {"p50": ms(percentile(seconds, 0.5)), "p90": ms(percentile(seconds, 0.9)),
            "p99": ms(percentile(seconds, 0.99)), "max": ms(max(seconds)),
            "mean": ms(statistics.fmean(seconds))}


def versions() -> dict[str, str]:
    """What the figures were measured with."""
    from importlib.metadata import version

    found = {"python": sys.version.split()[0], "supportd": __version__}
    for package in ("imapclient", "aiosmtplib", "aiosmtpd", "orjson"):
        with contextlib.suppress(Exception):
            found[package] = version(package)
    with contextlib.suppress(Exception):
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        found["dovecot"] = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                          timeout=5, check=False).stdout.split()[0]
    found["cpus"] = str(os.cpu_count())
    found["loadavg_1m"] = f"{os.getloadavg()[0]:.2f}"
    return found


def print_json(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=None, sort_keys=False))

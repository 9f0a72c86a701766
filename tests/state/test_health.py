"""Honest health: a wrong password is the settings' fault, shown, told to the owner, and survived."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import SUPPORT, World, mail
from service.test_daemon import WAIT, stop, wait_for_log


def status(world: World) -> tuple[int, dict[str, object]]:
    result = subprocess.run([sys.executable, "-m", "supportd", "status", "--json", "--config", str(world.config_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    return result.returncode, json.loads(result.stdout)


class Notifications:
    """A NOTIFY_SOCKET, as systemd gives a Type=notify service; collects what the daemon says."""

    def __init__(self, folder: Path) -> None:
        self.address = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.heard: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.done.is_set():
            try:
                self.heard.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def wait_for(self, text: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in m for m in self.heard):
                return
            time.sleep(0.05)
        raise AssertionError(f"systemd never heard {text!r}: {self.heard}")

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.sock.close()


def launch(world: World, notify: Notifications | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.address
    log = (world.root / "daemon.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "supportd", "run", "--config", str(world.config_path)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def test_a_refused_smtp_login_keeps_the_reply_queued_and_it_goes_out_once_the_password_is_fixed(world: World) -> None:
    """SMTP 535: the reply stays queued (never 'failed'), the message is not marked handled, status and
    STATUS= say why, the owner finds an alert in the support mailbox; a fixed password file is enough."""
    world.sink.auth = {SUPPORT: "right-password"}
    world.sink.restart()
    (world.root / "smtp-password").write_text("old-password\n")
    world.write_config(smtp={"user": SUPPORT, "password_file": "smtp-password", "retry_first_seconds": 1})
    notify = Notifications(world.root)
    process = launch(world, notify)
    try:
        world.deliver(mail("Where is my parcel for order 77120?", sender="ada@example.org"))
        wait_for_log(world, "refused supportd's login")
        notify.wait_for("SMTP login refused")
        code, report = status(world)
        assert code == 1 and report["running"] and report["queued_replies"] == 1
        assert "535" in str(report["smtp_problem"]) and "535" in str(report["last_error"])
        assert any("SMTP" in need for need in report["needs_owner"])  # type: ignore[attr-defined]
        client = world.imap()
        client.select_folder("INBOX", readonly=True)
        alerts = client.search(["SUBJECT", "cannot log in to the mail server"])
        flags = client.get_flags(client.search(["FROM", "ada@example.org"]))
        client.logout()
        assert len(alerts) == 1  # by the first channel that works: the mailbox the owner reads
        assert not any(b"$SupportdHandled" in f for f in flags.values())  # not marked handled: nothing lost
        (world.root / "smtp-password").write_text("right-password\n")
        world.sink.wait_for(1, timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while (code := status(world)[0]) and time.monotonic() < deadline:
            time.sleep(0.2)  # the pass finishes (copy to Sent) and health.json follows
        code, report = status(world)
        assert code == 0 and report["smtp_problem"] is None and report["queued_replies"] == 0
    finally:
        stop(process)
        notify.close()
    assert [m.rcpt_tos for m in world.sink.messages] == [["ada@example.org"]]


def test_a_refused_imap_login_is_not_ready_tells_the_owner_and_recovers_by_itself(world: World) -> None:
    """A wrong IMAP password: no READY=1, a STATUS= line that says so, one mail to the owner; once the
    password file is fixed supportd logs in, says READY=1 and answers the mail that waited."""
    world.write_config()
    (world.root / "imap-password").write_text("wrong")
    notify = Notifications(world.root)
    process = launch(world, notify)
    try:
        notify.wait_for("IMAP login refused")
        world.sink.wait_for(1, timeout=WAIT)
        assert "READY=1" not in notify.heard
        [alert] = world.sent_to("owner@shop.example")
        assert "cannot log in to the support mailbox" in str(alert["Subject"])
        code, report = status(world)
        assert code == 1 and "login refused" in str(report["imap_problem"]) and not report["ready"]
        world.deliver(mail("Where is my parcel?", sender="ada@example.org"))
        (world.root / "imap-password").write_text(world.user.password)
        notify.wait_for("READY=1", timeout=30)
        world.sink.wait_for(2, timeout=WAIT)
    finally:
        stop(process)
        notify.close()
    assert len(world.sent_to("ada@example.org")) == 1
    assert len(world.sent_to("owner@shop.example")) == 1  # once, not at every retry


def test_status_says_when_supportd_is_not_running(world: World) -> None:
    """`supportd status` exits non-zero and says so when no daemon runs; --json gives the same facts."""
    world.write_config()
    world.deliver(mail("Hello?"))
    world.once()
    code, report = status(world)
    assert code == 1 and report["running"] is False and "supportd is not running" in report["needs_owner"]
    assert report["open_tickets"] == 1 and report["queued_replies"] == 0
    text = subprocess.run([sys.executable, "-m", "supportd", "status", "--config", str(world.config_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert text.returncode == 1 and "NOT running" in text.stdout and "1 open" in text.stdout


def test_sighup_rereads_the_config_and_a_broken_one_is_refused_with_file_and_line(world: World) -> None:
    """SIGHUP applies an edited supportd.yaml; a broken edit is refused (file:line in the log, one mail to
    the owner) and the running config stays in use."""
    world.write_config()
    process = launch(world)
    try:
        wait_for_log(world, "supportd running")
        world.write_config(shop={"contact_footer": "New footer, call 555-0100"})
        process.send_signal(signal.SIGHUP)
        wait_for_log(world, "reloaded")
        world.deliver(mail("Where is my parcel?", sender="a@example.org"))
        world.sink.wait_for(1, timeout=WAIT)
        text = world.config_path.read_text()
        world.config_path.write_text(text + "limits:\n  acks_per_sender_per_dya: 3\n")
        process.send_signal(signal.SIGHUP)
        wait_for_log(world, "still using the last good ones")
        world.deliver(mail("Where is my parcel now?", sender="b@example.org"))
        world.sink.wait_for(3, timeout=WAIT)
    finally:
        stop(process)
    assert "New footer, call 555-0100" in world.sent_to("b@example.org")[0].get_content()
    log = (world.root / "daemon.log").read_text()
    line = len(text.splitlines()) + 2
    assert f"supportd.yaml:{line}" in log
    [alert] = world.sent_to("owner@shop.example")
    assert "config file" in str(alert["Subject"]) and "acks_per_sender_per_dya" in alert.get_content()
    assert "Customer:" not in alert.get_content() and "None" not in alert.get_content()  # no empty placeholders


def test_the_digest_never_calls_an_alert_sent_that_the_mail_server_refused(world: World, tmp_path: Path) -> None:
    """An alert the SMTP server refused for good is counted as not delivered, never as 'sent to you'."""
    world.write_config()
    world.sink.refuse("owner@shop.example", 550)
    world.deliver(mail("This is unacceptable!!! Third time I write about my broken mug.", sender="a@example.org",
                       subject="Broken mug"))
    world.once()
    assert world.sent_to("a@example.org") and not world.sent_to("owner@shop.example")
    result = subprocess.run([sys.executable, "-m", "supportd", "digest", "--preview", "--out", str(tmp_path),
                             "--config", str(world.config_path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "digest.txt").read_text()
    assert "sent to you" not in text
    # upset and writing again: one alert naming both causes
    assert "1 alert for you during the week; 1 of them could not be mailed to you" in text
    assert "1 of them did not reach you by mail" in text


def test_a_daemon_that_cannot_read_its_state_stops_once_and_tells_the_owner(world: World) -> None:
    """A damaged state file: supportd exits with 3 (the unit does not restart on 3), and the owner gets a
    mail saying what is wrong and what to do; the damaged file is left as it was."""
    world.write_config()
    world.deliver(mail())
    world.once()
    state = world.root / "state" / "state.json"
    state.write_bytes(b"{not json")
    result = subprocess.run([sys.executable, "-m", "supportd", "run", "--config", str(world.config_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3 and "supportd recover" in result.stderr
    [alert] = world.sent_to("owner@shop.example")
    assert "cannot use its state folder" in str(alert["Subject"]) and "supportd recover" in alert.get_content()
    assert state.read_bytes() == b"{not json"

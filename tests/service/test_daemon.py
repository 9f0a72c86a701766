"""``supportd run``: the long-running daemon, as a separate process, against real servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import World, mail

WAIT = 15.0


def start_daemon(world: World) -> subprocess.Popen[bytes]:
    world.write_config()
    log = (world.root / "daemon.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "supportd", "run", "--config", str(world.config_path)],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_for_log(world, "supportd running")
    return process


def wait_for_log(world: World, text: str, timeout: float = WAIT, times: int = 1) -> None:
    deadline = time.monotonic() + timeout
    log = world.root / "daemon.log"
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count(text) >= times:
            return
        time.sleep(0.05)
    raise AssertionError(f"'{text}' not in the daemon's log:\n{log.read_text(errors='replace')}")


def stop(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    return time.monotonic() - started


def test_mail_arriving_one_by_one_is_answered_while_running(world: World) -> None:
    """The daemon answers each email as it arrives, without a restart, within seconds (IDLE)."""
    process = start_daemon(world)
    try:
        for number in range(4):
            world.deliver(mail(f"Where is my order 7712{number}?", sender=f"c{number}@example.org",
                               subject=f"Order 7712{number}"))
            world.sink.wait_for(number + 1, timeout=WAIT)
    finally:
        stop(process)
    assert sorted(m.rcpt_tos[0] for m in world.sink.messages) == [f"c{n}@example.org" for n in range(4)]


def test_sigterm_stops_within_ten_seconds_and_loses_nothing(world: World) -> None:
    """SIGTERM ends the daemon promptly; mail that arrived before is answered, none twice."""
    process = start_daemon(world)
    for number in range(3):
        world.deliver(mail(f"Question {number}", sender=f"s{number}@example.org", subject=f"Q{number}"))
    world.sink.wait_for(3, timeout=WAIT)
    assert stop(process) < 10
    assert process.returncode == 0
    world.once()
    assert len(world.sink.messages) == 3


def test_sighup_reloads_rules_and_a_broken_file_keeps_the_last_good_rules(world: World, tmp_path: Path) -> None:
    """An edited rule is used without a restart; a broken edit is reported and the old rules stay."""
    rules = world.root / "rules"
    rules.mkdir()
    for source in (Path(__file__).parents[2] / "rules").glob("*.yaml"):
        (rules / source.name).write_text(source.read_text())
    world.rules_dir = rules
    process = start_daemon(world)
    try:
        (rules / "15-sizing.yaml").write_text(
            "intent: sizing\npriority: 95\nreply: other\nrules:\n  - name: shoe-size\n    text: [shoe size]\n")
        process.send_signal(signal.SIGHUP)
        wait_for_log(world, "reloaded")
        world.deliver(mail("Which shoe size should I order?", sender="p@example.org", subject="Size"))
        world.sink.wait_for(1, timeout=WAIT)
        (rules / "15-sizing.yaml").write_text("intent: sizing\nrules:\n  - name: [broken\n")
        process.send_signal(signal.SIGHUP)
        wait_for_log(world, "still using the last good ones")
        world.deliver(mail("My shoe size is wrong, what now?", sender="q@example.org", subject="Size again"))
        world.sink.wait_for(3, timeout=WAIT)  # the owner's alert, and the customer's reply
        corrected = ("intent: sizing\npriority: 95\nreply: other\nrules:\n"
                     "  - name: shoe-size\n    text: [shoe size, boot size]\n")
        (rules / "15-sizing.yaml").write_text(corrected)  # no signal this time: the edit itself is noticed
        wait_for_log(world, "reloaded", times=2)
        world.deliver(mail("Which boot size fits me?", sender="r@example.org", subject="Boots",
                           message_id="<boots@example.org>"))
        world.sink.wait_for(4, timeout=WAIT)
    finally:
        stop(process)
    log = (world.root / "daemon.log").read_text()
    assert "intent=sizing" in log.split("still using the last good ones")[1]
    [boots] = [line for line in log.splitlines() if "id=<boots@example.org>" in line]
    assert "rule=shoe-size" in boots
    assert "15-sizing.yaml:3" in log
    owner_alerts = world.sent_to("owner@shop.example")
    assert len(owner_alerts) == 1 and "rule files" in str(owner_alerts[0]["Subject"])


def test_an_edited_reply_is_checked_then_used_and_a_broken_one_keeps_the_last_good(world: World) -> None:
    """An owner's edit of a reply template reaches the running daemon without a signal; a broken edit is
    refused with its file and line, customers still get the last good text, and the owner is told."""
    import shutil

    replies = world.root / "replies"
    shutil.copytree(world.replies_dir, replies)
    world.replies_dir = replies
    process = start_daemon(world)
    try:
        other = replies / "other.txt"
        other.write_text(other.read_text().replace("Your message has arrived", "Your message reached us"))
        wait_for_log(world, "reloaded")
        world.deliver(mail("A question about gift wrapping", sender="p@example.org", subject="Wrapping"))
        world.sink.wait_for(1, timeout=WAIT)
        other.write_text(other.read_text().replace("{{ shop }}", "{{ shop "))
        wait_for_log(world, "still using the last good ones")
        world.deliver(mail("Another question about wrapping", sender="q@example.org", subject="Wrapping again"))
        world.sink.wait_for(3, timeout=WAIT)  # the owner's alert, and the customer's reply
    finally:
        stop(process)
    [first] = world.sent_to("p@example.org")
    [second] = world.sent_to("q@example.org")
    assert "Your message reached us" in first.get_body(("plain",)).get_content()
    assert "Your message reached us" in second.get_body(("plain",)).get_content()
    log = (world.root / "daemon.log").read_text()
    assert "replies/other.txt:4: template syntax" in log, log
    assert len(world.sent_to("owner@shop.example")) == 1


def test_backoff_grows_with_jitter_up_to_a_cap() -> None:
    """Reconnect waits double each time (1 s, 2 s, 4 s ...) with up to 30% jitter, and never exceed 2.6 min."""
    from supportd.service.daemon import MAX_BACKOFF, Backoff

    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(12)]
    for number, delay in enumerate(delays[:6]):
        assert 2**number <= delay <= 2**number * 1.3
    assert max(delays) <= MAX_BACKOFF * 1.3
    backoff.reset()
    assert backoff.next_delay() <= 1.3


def test_systemd_hears_ready_watchdog_reloading_and_stopping(world: World) -> None:
    """Under systemd the daemon says READY, feeds the watchdog, and reports reloads and its stop."""
    import socket

    address = str(world.root / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(0.2)
    world.write_config()
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000", "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_PID", None)
    log = (world.root / "daemon.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "supportd", "run", "--config", str(world.config_path)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    heard: list[str] = []

    def listen(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                heard.append(listener.recv(4096).decode())
            except TimeoutError:
                continue

    try:
        listen(4)
        process.send_signal(signal.SIGHUP)
        listen(2)
    finally:
        stop(process)
        listen(0.5)
        listener.close()
    assert "READY=1" in heard
    assert heard.count("WATCHDOG=1") >= 4  # every half of WATCHDOG_USEC
    assert any(m.startswith("RELOADING=1") for m in heard)
    assert "STOPPING=1" in heard


def test_log_has_one_line_per_message_and_no_bodies_or_secrets(world: World) -> None:
    """The journal gets one line per message with its Message-ID, intent and rule; never its text or a password."""
    world.write_config()
    world.deliver(mail("My vase arrived broken, the secret word is PERIWINKLE.", message_id="<vase@example.org>",
                       subject="Broken vase"))
    result = subprocess.run([sys.executable, "-m", "supportd", "once", "--config", str(world.config_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if "id=<vase@example.org>" in line]
    assert len(lines) == 1
    assert "intent=defect" in lines[0] and "rule=broken-or-damaged" in lines[0] and "did=acknowledged" in lines[0]
    assert "PERIWINKLE" not in result.stderr
    assert world.user.password not in result.stderr

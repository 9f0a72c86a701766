"""One writer for the state: commands hand their changes to the running daemon; state files keep their owner."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from act.test_tickets import ADA, reply_to
from conftest import World, mail
from service.test_daemon import WAIT, start_daemon, stop, wait_for_log


def supportd(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supportd", *args, "--config", str(world.config_path)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_resolve_during_a_live_run_is_applied_by_the_daemon(world: World) -> None:
    """`supportd resolve` while the daemon runs: the daemon closes the ticket and tells the customer; the
    customer's 'thanks' to that mail joins the same ticket, with no new acknowledgment and no new ticket."""
    process = start_daemon(world)
    try:
        world.deliver(mail("The vase arrived broken.", sender=ADA, subject="Broken vase"))
        world.sink.wait_for(1, timeout=WAIT)
        [number] = world.tickets()
        result = supportd(world, "resolve", str(number), "--message", "A new vase is on its way.")
        assert result.returncode == 0, result.stderr
        assert f"closed ticket {number}" in result.stdout
        world.sink.wait_for(2, timeout=WAIT)  # sent by the daemon, not by the command
        sorted_mail = world.sent_to("ada@example.org")[-1]
        assert "A new vase is on its way." in sorted_mail.get_content()
        world.deliver(reply_to(sorted_mail, "Thanks, it arrived!"))
        wait_for_log(world, f"ticket={number} ", times=2)
    finally:
        stop(process)
    assert len(world.sent_to("ada@example.org")) == 2  # the acknowledgment and 'sorted', nothing new
    assert list(world.tickets()) == [number]
    log = (world.root / "daemon.log").read_text()
    assert "applied resolve from the command line" in log


def test_a_second_daemon_on_the_same_state_refuses_to_start(world: World) -> None:
    """Two `supportd run` on one state folder would be two writers: the second one says so and exits."""
    process = start_daemon(world)
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        second = subprocess.run([sys.executable, "-m", "supportd", "run", "--config", str(world.config_path)],
                                capture_output=True, text=True, timeout=60, check=False, env=env)
        started = time.monotonic()
        others = [supportd(world, "once"), supportd(world, "recover")]
        waited = time.monotonic() - started
    finally:
        stop(process)
    assert second.returncode == 3 and "already running" in second.stderr
    for other in others:
        assert other.returncode == 3 and "already running" in other.stderr
    assert waited < 20  # a command does not wait for a daemon to stop: it says so at once


def test_digest_send_and_pending_drop_during_a_live_run_are_applied_by_the_daemon(world: World) -> None:
    """`digest --send` and `pending drop` while the daemon runs: the daemon queues and sends the digest,
    and the dropped cancellation is not carried out when the customer confirms it afterwards."""
    process = start_daemon(world)
    try:
        world.deliver(mail("Please cancel my order 77120.", sender=ADA, subject="Cancel"))
        world.sink.wait_for(1, timeout=WAIT)  # the confirmation request
        listed = supportd(world, "pending")
        [held_id] = [line.split()[0] for line in listed.stdout.splitlines() if "cancel" in line]
        dropped = supportd(world, "pending", "drop", held_id)
        digest = supportd(world, "digest", "--send")
        world.sink.wait_for(2, timeout=WAIT)
    finally:
        stop(process)
    assert dropped.returncode == 0 and f"dropped {held_id}" in dropped.stdout
    assert digest.returncode == 0 and "queued" in digest.stdout
    [sent_digest] = world.sent_to("owner@shop.example")
    assert "your week" in str(sent_digest["Subject"])
    assert "applied pending-drop" in (world.root / "daemon.log").read_text()
    assert "no pending actions" in supportd(world, "pending").stdout


def system_python(folder: Path) -> Path:
    """A venv of Debian's /usr/bin/python3 that sees supportd and its dependencies, as on a server.

    The test venv's Python may live under /root (pyenv), which another user cannot enter.
    """
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(folder)], check=True)
    [site] = folder.glob("lib/python3*/site-packages")
    here = Path(__file__).resolve().parents[2]
    [deps] = (here / ".venv").glob("lib/python3*/site-packages")
    (site / "supportd-dev.pth").write_text(f"{here}\n{deps}\n")
    return folder / "bin" / "python"


def owners(folder: Path) -> set[int]:
    return {p.lstat().st_uid for p in [folder, *folder.rglob("*")]}


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="needs root and /usr/bin/python3: the owner runs commands as root on the server")
def test_a_root_command_on_a_folder_owned_by_the_service_keeps_every_file_its_owner(world: World) -> None:
    """Run as root on a state folder owned by another user (as systemd's DynamicUser leaves it), resolve
    acts as that user: the ticket is closed, the customer told, and root owns no state file afterwards."""
    world.write_config()
    world.deliver(mail("The vase arrived broken.", sender=ADA, subject="Broken vase"))
    world.once()
    [number] = world.tickets()
    nobody = pwd.getpwnam("nobody")
    state = world.root / "state"
    for path in [state, *state.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    python = str(system_python(world.root / "venv"))

    def as_root(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, "-m", "supportd", *args, "--config", str(world.config_path)],
                              capture_output=True, text=True, timeout=120, check=False, cwd="/")

    listed = as_root("tickets")
    result = as_root("resolve", str(number), "--message", "A new vase is on its way.")
    assert listed.returncode == 0 and f"#{number}" in listed.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert owners(state) == {nobody.pw_uid}
    assert world.tickets()[number]["state"] == "closed"
    assert "A new vase is on its way." in world.sent_to("ada@example.org")[-1].get_content()
    status = as_root("status")
    assert "NOT running" in status.stdout and owners(state) == {nobody.pw_uid}


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="needs root and /usr/bin/python3: the owner runs commands as root on the server")
def test_recover_reports_a_tickets_file_of_another_user_as_ownership_not_damage(world: World) -> None:
    """A tickets.G.jsonl that root left behind (unreadable to the service's user): `supportd recover`, run as
    root, says whose file it is and how to give it back, exits 3, and changes no file."""
    world.write_config()
    state = world.root / "state"
    env = {**os.environ, "SUPPORTD_FOLD_TICKETS": "1"}  # every commit folds: the tickets are in tickets.G.jsonl
    for n in range(2):
        world.deliver(mail(f"Vase number {n} arrived broken.", sender=f"c{n}@example.org", subject="Broken vase"))
        subprocess.run([sys.executable, "-m", "supportd", "once", "--config", str(world.config_path)], env=env,
                       check=True, capture_output=True, timeout=120)
    [tickets_file] = sorted(state.glob("tickets.*.jsonl"))[-1:]
    nobody = pwd.getpwnam("nobody")
    for path in [state, *state.rglob("*")]:
        if path != tickets_file:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    tickets_file.chmod(0o600)  # root's, as a command run as root before would have left it
    before = {p.name: p.read_bytes() for p in state.glob("*.json*")}
    python = str(system_python(world.root / "venv"))
    result = subprocess.run([python, "-m", "supportd", "recover", "--config", str(world.config_path)],
                            capture_output=True, text=True, timeout=120, check=False, cwd="/")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert f"{tickets_file.name} belongs to uid 0" in output and "not damaged" in output
    assert f"chown -R --reference={state} {state}" in output
    assert {p.name: p.read_bytes() for p in state.glob("*.json*")} == before
    assert len(world.tickets()) == 2

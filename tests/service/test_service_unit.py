"""The systemd units: hardened (``systemd-analyze security``), valid (``systemd-analyze verify``).

Both checks run offline against the unit files in the repository; nothing is started. The
template ``supportd@.service`` is checked through an instance name (``supportd@shop.service``)
in a temporary copy, the way systemd would load it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_EXPOSURE = 2.0
# (file in the repository, unit name that systemd-analyze is asked about)
UNITS = [
    ("supportd.service", "supportd.service"),
    ("supportd@.service", "supportd@shop.service"),
]
INSTALLED_EXECUTABLE = "/opt/supportd/venv/bin/supportd"

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt install systemd)"
)

EXPOSURE_RE = re.compile(r"Overall exposure level for (\S+): ([0-9]+(?:\.[0-9]+)?)")


def _analyze(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def _copy_unit(source: str, folder: Path, executable: str = INSTALLED_EXECUTABLE) -> None:
    """Copy a unit into ``folder``, with ExecStart pointing at ``executable``."""
    text = (ROOT / source).read_text()
    assert INSTALLED_EXECUTABLE in text
    (folder / source).write_text(text.replace(INSTALLED_EXECUTABLE, executable))


def exposure(output: str) -> tuple[str, float]:
    """("supportd.service", 1.1) from "→ Overall exposure level for supportd.service: 1.1 OK"."""
    match = EXPOSURE_RE.search(output)
    if match is None:
        raise AssertionError(f"no overall exposure in systemd-analyze output:\n{output}")
    return match.group(1), float(match.group(2))


def test_exposure_parser() -> None:
    line = "→ Overall exposure level for supportd@shop.service: 1.2 OK 🙂"
    assert exposure(line) == ("supportd@shop.service", 1.2)
    assert exposure("Overall exposure level for x.service: 9.6 UNSAFE 😨") == ("x.service", 9.6)
    with pytest.raises(AssertionError):
        exposure("Failed to load unit")


@pytest.mark.parametrize(("source", "unit"), UNITS)
def test_security_exposure_at_most_2(source: str, unit: str, tmp_path: Path) -> None:
    # The unit exactly as shipped (security does not care whether ExecStart exists).
    _copy_unit(source, tmp_path)
    result = _analyze("security", "--offline=true", "--no-pager", str(tmp_path / unit))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    name, level = exposure(output)
    assert name == unit
    assert level <= MAX_EXPOSURE, f"{unit}: exposure {level} > {MAX_EXPOSURE}\n{output}"
    # A directive systemd does not understand is silently dropped from the assessment.
    assert "ignoring" not in result.stderr, result.stderr


# Lines of "systemd-analyze verify" output that are about this machine, not about our units.
_MACHINE_NOISE = [
    # verify also loads the host's own units (sysinit.target, network-online.target and what they
    # pull in) and reports their problems by file name; our units live in the temporary folder,
    # so a "file:line:" message about any other file is the host's business.
    re.compile(r"^(?P<path>/\S+?):\d+: "),
    # /bin/kill (ExecReload) comes from procps, which a minimal container may lack; every real
    # Debian/Ubuntu install has it. The check of ExecStart is done against a stub (see below).
    re.compile(r"Command /bin/kill is not executable"),
]


def _verify_problems(output: str, unit_folder: Path) -> list[str]:
    problems = []
    for line in output.splitlines():
        if not line.strip():
            continue
        host_file = _MACHINE_NOISE[0].match(line)
        if host_file and not host_file.group("path").startswith(str(unit_folder)):
            continue
        if any(pattern.search(line) for pattern in _MACHINE_NOISE[1:]):
            continue
        problems.append(line)
    return problems


@pytest.mark.skipif(
    not Path("/lib/systemd/system/sysinit.target").exists()
    and not Path("/usr/lib/systemd/system/sysinit.target").exists(),
    reason="the host has no systemd unit files: verify cannot resolve default dependencies",
)
@pytest.mark.parametrize(("source", "unit"), UNITS)
def test_verify_clean(source: str, unit: str, tmp_path: Path) -> None:
    # verify checks that ExecStart= is an executable file; /opt/supportd/venv does not exist on
    # a development machine, so the copy points ExecStart at an empty stub (same arguments).
    stub = tmp_path / "supportd"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    _copy_unit(source, tmp_path, executable=str(stub))
    # --man=no: Documentation= man pages are the machine's business; --generators=no: the host's
    # generators (fstab, getty, ...) have nothing to do with our units.
    result = _analyze("verify", "--man=no", "--generators=no", str(tmp_path / unit), cwd=tmp_path)
    output = result.stdout + result.stderr
    # verify exits 0 even for unknown keys or unparsable values: read what it printed.
    assert result.returncode == 0, output
    assert _verify_problems(output, tmp_path) == [], output


def test_verify_notices_a_broken_unit(tmp_path: Path) -> None:
    """The filters above must not hide a real mistake in our own file."""
    stub = tmp_path / "supportd"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    text = (ROOT / "supportd.service").read_text().replace(INSTALLED_EXECUTABLE, str(stub))
    broken = text.replace("ProtectHome=yes\n", "ProtectHome=yess\nProtectHomme=yes\n")
    assert broken != text
    (tmp_path / "supportd.service").write_text(broken)
    result = _analyze("verify", "--man=no", "--generators=no", str(tmp_path / "supportd.service"))
    problems = _verify_problems(result.stdout + result.stderr, tmp_path)
    assert any("yess" in p for p in problems), problems
    assert any("ProtectHomme" in p for p in problems), problems


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("source", [source for source, _ in UNITS])
def test_daemon_contract(source: str) -> None:
    """What the daemon relies on: notify + watchdog, SIGHUP reload, 15 s stop, credentials."""
    d = _directives((ROOT / source).read_text())
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    (config,) = {value.split("--config ")[1] for value in d["ExecStart"]}
    assert d["ExecStartPre"] == [f"{INSTALLED_EXECUTABLE} check --config {config}"]  # a broken config never starts
    assert d["ExecReload"] == [f"{INSTALLED_EXECUTABLE} check --config {config}", "/bin/kill -HUP $MAINPID"]
    assert 120 <= int(d["TimeoutStartSec"][0]) <= 300  # READY=1 waits for the first IMAP login (with backoff)
    assert d["KillSignal"] == ["SIGTERM"]
    assert d["TimeoutStopSec"] == ["15"]
    assert d["Restart"] == ["on-failure"]
    assert 30 <= int(d["WatchdogSec"][0]) <= 120
    assert d["DynamicUser"] == ["yes"]
    assert d["ConfigurationDirectory"] == ["supportd"]
    credentials = sorted(v.partition(":")[0] for v in d["LoadCredential"])
    assert credentials == ["imap-password", "smtp-password"]
    (exec_start,) = d["ExecStart"]
    assert exec_start.startswith(INSTALLED_EXECUTABLE + " run --config /etc/supportd/")


def test_template_differs_only_per_instance() -> None:
    """The two units keep the same hardening; only the per-mailbox lines differ."""
    single = _directives((ROOT / "supportd.service").read_text())
    template = _directives((ROOT / "supportd@.service").read_text())
    per_instance = {
        "Description",
        "ExecStart",
        "ExecStartPre",
        "ExecReload",
        "StateDirectory",
        "LoadCredential",
        "SyslogIdentifier",
    }
    differing = {k for k in single.keys() | template.keys() if single.get(k) != template.get(k)}
    assert differing <= per_instance, differing
    assert template["StateDirectory"] == ["supportd/%i"]
    assert template["ExecStart"] == [f"{INSTALLED_EXECUTABLE} run --config /etc/supportd/%i.yaml"]
    assert all("/credentials/%i/" in v for v in template["LoadCredential"])

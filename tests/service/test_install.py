"""The README's install section, followed line by line as a new owner would (in a temp root).

The commands are read from README.md itself, so the documentation cannot drift from what works.
Only what a container cannot do is left out: systemctl (the unit is checked by
tests/test_service_unit.py), and apt when the package is already there or we are not root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def systemd_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Running under systemd")
    return text[start : text.index("\n## ", start + 1)]


def shell_blocks(section: str) -> list[list[str]]:
    """Each ```sh block of the section as its command lines (comments and blank lines dropped)."""
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        lines = [re.sub(r"\s+#.*$", "", line).strip() for line in body.splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


@pytest.fixture
def root() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="sd-install-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def in_root(line: str, root: Path) -> str:
    """The README's absolute paths moved under ``root``; '/path/to/supportd' is this folder."""
    line = line.replace("/path/to/supportd", str(REPO))
    return re.sub(r"(?<![\w/])/(opt|etc)/supportd", lambda m: f"{root}/{m.group(1)}/supportd", line)


def run(line: str, root: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", in_root(line, root)], capture_output=True,
                            text=True, timeout=600, check=False, cwd=root, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"README line failed: {line}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_readme_install_section_works_as_written(root: Path) -> None:
    """Steps 1-3 of 'Running under systemd', run as written: install, init, passwords; then check and try."""
    section = systemd_section()
    install, passwords, *_ = shell_blocks(section)
    venv_missing = subprocess.run(["/usr/bin/python3", "-c", "import venv, ensurepip"], check=False).returncode
    for line in install:
        if line.startswith("apt ") and (os.geteuid() != 0 or not venv_missing):
            continue  # nothing to install (or not allowed here): the line is still the README's
        run(line, root)
    venv = root / "opt/supportd/venv"
    assert os.path.realpath(venv / "bin/python").startswith("/usr/bin/"), "the service cannot see /root or /home"
    [init] = re.findall(r"`(/opt/supportd/venv/bin/supportd init [^`]+)`", section)
    said = run(init, root).stdout
    pointers = re.findall(r'README: "([^"]+)"', said)  # 'see the README: "Running under systemd"'
    assert pointers
    for section in pointers:
        assert f"## {section}\n" in (REPO / "README.md").read_text(encoding="utf-8"), section
    run("\n".join(passwords), root)  # one block: a subshell spans lines
    assert (root / "etc/supportd/credentials/imap-password").stat().st_mode & 0o077 == 0

    config = root / "etc/supportd/supportd.yaml"
    assert "state: /var/lib/supportd" in config.read_text(encoding="utf-8")
    unit = (REPO / "supportd.service").read_text(encoding="utf-8")
    check = re.search(r"^ExecStartPre=(.*supportd check.*)$", unit, flags=re.M)
    assert check, "the unit checks the config before each start"
    result = run(check.group(1).lstrip("-"), root)
    assert result.stdout.startswith("ok:")
    eml = root / "mug.eml"
    eml.write_text("From: Ada <ada@example.org>\nTo: support@shop.example\nSubject: Broken mug\n"
                   "Message-ID: <m1@example.org>\n\nMy mug arrived broken.\n")
    tried = run(f"/opt/supportd/venv/bin/supportd try --json --config /etc/supportd/supportd.yaml {eml}", root)
    assert '"primary_intent": "defect"' in tried.stdout
    shipped = {str(p.relative_to(REPO)) for folder in ("rules", "replies") for p in (REPO / folder).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    installed = {str(p.relative_to(root / "etc/supportd")) for p in (root / "etc/supportd").rglob("*")
                 if p.is_file() and p.parts[-2:][0] != "credentials" and p.name != "supportd.yaml"}
    assert shipped <= installed, f"missing from a non-editable install (setup.cfg data_files): {shipped - installed}"
    where = "import supportd, os; print(os.path.dirname(supportd.__file__))"
    package = subprocess.run([str(venv / "bin/python"), "-c", where], capture_output=True, text=True, check=True,
                             cwd=root).stdout.strip()
    templates = {p.name for p in (REPO / "supportd/owner/templates").iterdir()}
    missing = {name for name in templates if not (Path(package) / "owner/templates" / name).is_file()}
    assert not missing, f"missing from a non-editable install (setup.cfg package_data): {missing}"

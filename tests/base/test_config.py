"""The config file: checked at start, every problem named with its file, line and what to do."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from supportd.base.config import load_config
from supportd.base.errors import InvalidFiles
from supportd.base.settings import BY_NAME, SETTINGS, default

from conftest import REPO

GOOD = """\
shop:
  name: Example Shop
  support_address: support@shop.example
  owner_address: owner@shop.example
imap:
  host: imap.shop.example
  user: support@shop.example
  password_env: SUPPORTD_TEST_IMAP_PASSWORD
smtp:
  host: smtp.shop.example
  tls: starttls
paths:
  state: state
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "supportd.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InvalidFiles) as caught:
        load_config(write(tmp_path, text))
    return [str(p) for p in caught.value.problems]


def test_a_good_config_loads_with_safe_defaults(tmp_path: Path) -> None:
    """Implicit TLS with certificate checks by default; relative paths resolved beside the config file."""
    config = load_config(write(tmp_path, GOOD))
    assert config.imap.server.tls == "implicit" and config.imap.server.port == 993
    assert config.imap.server.verify_certificate is True
    assert config.smtp.server.port == 587
    assert config.state_dir == tmp_path / "state"
    assert config.imap.handled_keyword == "$SupportdHandled"


def test_unknown_key_is_reported_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    """A typo ('hots') names the file, the line and the key it probably meant."""
    found = problems(tmp_path, GOOD.replace("  host: imap.shop.example", "  hots: imap.shop.example"))
    path = tmp_path / "supportd.yaml"
    assert f"{path}:6: unknown key 'imap.hots' (did you mean 'host'?)" in found


def test_wrong_type_and_bad_choice_are_reported(tmp_path: Path) -> None:
    """A port written as text and an unknown TLS mode each get a line saying what is allowed."""
    text = GOOD.replace("  tls: starttls", "  tls: ssl\n  port: twenty-five")
    found = "\n".join(problems(tmp_path, text))
    assert ":11: smtp.tls is 'ssl'; choose one of: none, starttls, implicit" in found
    assert ":12: smtp.port must be a whole number, not text" in found


def test_a_password_written_in_the_config_is_refused(tmp_path: Path) -> None:
    """Secrets never live in the config: a 'password:' line is refused with the three ways to give one."""
    found = "\n".join(problems(tmp_path, GOOD.replace("  password_env: SUPPORTD_TEST_IMAP_PASSWORD",
                                                      "  password: hunter2")))
    assert "do not write the password in the config" in found
    assert "password_env" in found and "password_credential" in found


def test_times_dates_and_zones_are_checked(tmp_path: Path) -> None:
    """An unquoted time, a date that is not one, and an unknown time zone are each reported."""
    text = GOOD + "hours:\n  timezone: Europe/Atlantis\n  open: 9 am\n  holidays: [2026-13-40]\n"
    found = "\n".join(problems(tmp_path, text))
    assert "hours.timezone 'Europe/Atlantis' is not a known time zone" in found
    assert 'hours.open must be a time in quotes, like "09:00"' in found
    assert "hours.holidays: '2026-13-40' is not a date" in found


def test_times_may_be_written_without_quotes(tmp_path: Path) -> None:
    """'close: 17:00' means five in the afternoon, not the number 1020 (YAML 1.1's base-60 reading)."""
    config = load_config(write(tmp_path, GOOD + "hours:\n  open: 08:30\n  close: 17:00\n"
                                                 "  holidays: [2026-12-24]\ndigest:\n  time: 8:05\n"))
    assert config.hours.opens == (8, 30) and config.hours.closes == (17, 0)
    assert config.digest.time == (8, 5)
    assert [str(day) for day in config.hours.holidays] == ["2026-12-24"]


def test_missing_required_settings_are_listed_together(tmp_path: Path) -> None:
    """Every missing setting is reported at once, not one per start."""
    found = "\n".join(problems(tmp_path, "shop:\n  name: x\nimap: {}\nsmtp: {}\n"))
    for key in ("shop.support_address", "shop.owner_address", "imap.host", "smtp.host"):
        assert f"'{key}' is missing" in found


def test_secret_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The password is read where the config says, and printing the settings never shows it."""
    monkeypatch.setenv("SUPPORTD_TEST_IMAP_PASSWORD", "hunter2")
    config = load_config(write(tmp_path, GOOD))
    assert config.imap.server.password is not None
    assert config.imap.server.password.reveal() == "hunter2"
    assert "hunter2" not in repr(config)


def test_check_command_prints_file_line_problems_and_exits_2(tmp_path: Path) -> None:
    """`supportd check` on a broken config lists file:line problems and exits 2."""
    path = write(tmp_path, GOOD.replace("  tls: starttls", "  tls: sometimes"))
    result = subprocess.run([sys.executable, "-m", "supportd", "check", "--config", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert f"{path}:11: smtp.tls is 'sometimes'" in result.stdout + result.stderr


def readme_settings() -> dict[str, str | None]:
    """The README's configuration table: ``section.key`` -> the default it shows (None where it shows none)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("| section | key (default) | meaning |", 1)[1].split("\n\n", 1)[0]
    shown: dict[str, str | None] = {}
    section = ""
    for row in table.splitlines()[2:]:
        cells = row.split(" | ")
        section = cells[0].strip("| `") or section
        keys = cells[1].replace("`NAME`:", "").strip()
        prefix = f"{section}.NAME." if section == "actions" else f"{section}."
        for key, value in re.findall(r"`(\w+)`(?: \(`([^`]*)`\))?", keys):
            shown[prefix + key] = value or None
    return shown


def shown(value: object) -> str:
    """A default as the README writes it: `60`, `true`, `[]`, `""`, `our shop`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value) if value != "" else '""'


def test_readme_configuration_table_matches_the_declared_settings() -> None:
    """The README lists every setting supportd reads, with the default it really has, and no other."""
    table = readme_settings()
    assert sorted(set(table) ^ set(BY_NAME)) == []
    for name, setting in BY_NAME.items():
        assert table[name] == (None if setting.default is None else shown(setting.default)), name


# Values for the settings that have no default, where any text would not do.
UNDEFAULTED = {"imap.port": 993, "smtp.port": 587, "digest.timezone": "Europe/Berlin", "shop.message_id_domain":
               "shop.example", "shop.support_address": "support@shop.example", "shop.owner_address": "o@shop.example"}


def test_every_declared_setting_is_read(tmp_path: Path) -> None:
    """A config that sets every declared key is accepted: no declaration without a reader behind it."""
    lines = []
    for section in dict.fromkeys(s.section for s in SETTINGS if s.section != "actions"):
        lines.append(f"{section}:")
        for setting in (s for s in SETTINGS if s.section == section):
            if setting.key in ("password_env", "password_file", "csv"):
                continue  # one password source, one order source
            value = setting.default if setting.default is not None else UNDEFAULTED.get(setting.name, "Folder")
            lines.append(f"  {setting.key}: {json.dumps(value)}")
    loaded = load_config(write(tmp_path, "\n".join(lines) + "\n"))
    assert loaded.imap.poll_seconds == default("imap.poll_seconds") and loaded.hours.days == (0, 1, 2, 3, 4)

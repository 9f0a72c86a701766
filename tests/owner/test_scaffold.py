"""``supportd init DIR``: a commented config that ``supportd check`` accepts, the default rules and replies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supportd.base.config import repository_defaults
from supportd.service.cli import EXIT_INVALID, EXIT_OK, main


def init(folder: Path, *extra: str) -> int:
    return main(["init", str(folder), *extra])


def check(config: Path) -> int:
    return main(["check", "--config", str(config)])


def names(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_init_writes_a_config_that_check_accepts_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A new owner runs init, then check: the freshly written setup is accepted as it is."""
    assert init(tmp_path / "shop") == EXIT_OK
    assert check(tmp_path / "shop" / "supportd.yaml") == EXIT_OK
    assert capsys.readouterr().out.splitlines()[-1].startswith("ok: ")


def test_init_config_accepted_once_the_host_names_are_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Filling in the shop's own mail servers, as the next steps say, keeps the config valid."""
    init(tmp_path)
    config = tmp_path / "supportd.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("host: imap.shop.example", "host: mail.myshop.example")
    text = text.replace("host: smtp.shop.example", "host: mail.myshop.example")
    config.write_text(text.replace("support@shop.example", "help@myshop.example"), encoding="utf-8")
    assert check(config) == EXIT_OK
    assert "ok: " in capsys.readouterr().out


def test_check_names_the_line_of_a_mistyped_setting_in_the_written_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The written config is really checked: a typo the owner makes is reported with its file and line."""
    init(tmp_path)
    config = tmp_path / "supportd.yaml"
    lines = config.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines, start=1) if line.startswith("  poll_seconds:"))
    lines[number - 1] = lines[number - 1].replace("poll_seconds", "pol_seconds")
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert check(config) == EXIT_INVALID
    assert f"supportd.yaml:{number}:" in capsys.readouterr().err


def test_init_copies_every_default_rule_and_reply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The owner gets the shipped rules and replies to edit, file for file and byte for byte."""
    init(tmp_path)
    for default, name in zip(repository_defaults(), ("rules", "replies"), strict=True):
        assert names(tmp_path / name) == names(default)
        for relative in names(default):
            assert (tmp_path / name / relative).read_bytes() == (default / relative).read_bytes()


def test_init_config_explains_its_settings_and_holds_no_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The config is commented for the owner, and says where passwords go instead of holding one."""
    init(tmp_path)
    text = (tmp_path / "supportd.yaml").read_text(encoding="utf-8")
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#") or " # " in line]
    assert len(comments) >= 30
    for section in ("shop", "imap", "smtp", "paths", "hours", "limits", "digest"):
        assert re.search(rf"^{section}:", text, re.MULTILINE), section
    assert "password_credential" in text and "password_env" in text
    assert not re.search(r"^\s*password:", text, re.MULTILINE)


def test_init_tells_the_next_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After init the owner is told what to do next, with the check command for their file."""
    init(tmp_path)
    out = capsys.readouterr().out
    assert f"supportd check --config {tmp_path / 'supportd.yaml'}" in out


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second init does not destroy the owner's edits: nothing is written, and --force is named."""
    init(tmp_path)
    config = tmp_path / "supportd.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("Example Shop", "My Own Shop"), encoding="utf-8")
    rule = tmp_path / "rules" / "10-defect.yaml"
    rule.write_text(rule.read_text(encoding="utf-8") + "# my note\n", encoding="utf-8")
    capsys.readouterr()
    assert init(tmp_path) != EXIT_OK
    assert "--force" in capsys.readouterr().out
    assert "My Own Shop" in config.read_text(encoding="utf-8")
    assert rule.read_text(encoding="utf-8").endswith("# my note\n")


def test_init_with_force_writes_the_defaults_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --force the owner gets a fresh config back."""
    init(tmp_path)
    config = tmp_path / "supportd.yaml"
    config.write_text("shop: {}\n", encoding="utf-8")
    assert init(tmp_path, "--force") == EXIT_OK
    assert check(config) == EXIT_OK

"""``supportd init DIR``: a commented config (from settings.py), the default rules and replies, the next steps."""

from __future__ import annotations

import shutil
from pathlib import Path

from supportd.base.config import repository_defaults
from supportd.base.settings import init_file

NEXT_STEPS = """\
Wrote {dir}:
  {config}   the settings, every one commented
  rules/           how mail is sorted (one YAML file per intent), and your FAQ (rules/60-faq-*.yaml)
  replies/         what customers receive (text, optional HTML)

Next:
  1. Edit {config}: your shop, your mail servers, your hours.
  2. Put the passwords where the config says (e.g. /etc/supportd/credentials/imap-password, mode 0600).
  3. supportd check --config {config}   (it also lists the FAQ answers still to write)
  4. supportd try --config {config} some-customer-mail.eml
  5. systemctl enable --now supportd   (see the README: "Running under systemd")
"""


def write_scaffold(folder: Path, force: bool = False) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "supportd.yaml"
    if config.exists() and not force:
        print(f"{config} exists; nothing written (use --force to overwrite)")
        return 1
    rules_src, replies_src = repository_defaults()
    config.write_text(init_file(str(config)), encoding="utf-8")
    for source, name in ((rules_src, "rules"), (replies_src, "replies")):
        shutil.copytree(source, folder / name, dirs_exist_ok=True)
    print(NEXT_STEPS.format(dir=folder, config=config))
    return 0

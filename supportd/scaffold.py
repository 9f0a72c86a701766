"""``supportd init DIR``: a commented config, the default rules and replies, and the next steps."""

from __future__ import annotations

import shutil
from pathlib import Path

from supportd.config import repository_defaults

CONFIG_TEMPLATE = """\
# supportd configuration. Every setting is explained; `supportd check --config {config}` checks it.
# Paths are relative to this file's folder. Passwords are never written here: see password_env,
# password_file and password_credential below.

shop:
  name: "Example Shop"                      # signs every reply
  support_address: support@shop.example     # the mailbox supportd answers for
  aliases: []                               # other addresses that land in the same mailbox
  owner_address: owner@shop.example         # escalations and the weekly digest go here
  language: en                              # replies in this language unless replies/<code>/ has the customer's
  staff_addresses: []                       # people who answer customers too (never treated as customers)
  contact_footer: |                         # at the end of every reply: how to reach a person
    Example Shop · 12 Market Street, Berlin · +49 30 1234567 · https://shop.example

imap:
  host: imap.shop.example
  tls: implicit            # implicit (port 993) | starttls (port 143) | none (only on localhost)
  # port: 993
  # verify_certificate: true   # keep it on; set ca_file for a private certificate authority
  user: support@shop.example
  password_credential: imap-password      # systemd LoadCredential; or password_env / password_file
  folder: INBOX
  sent_folder: Sent                       # a copy of every reply; "" for none
  handled_keyword: $SupportdHandled       # set on handled mail (nothing is ever deleted)
  # move_handled_to: Support/Handled      # or move handled mail (needs the MOVE extension)
  # quarantine_folder: Support/Quarantine # where messages supportd cannot handle are set aside
  idle: true                              # push via IMAP IDLE; falls back to polling
  poll_seconds: 60
  idle_renew_minutes: 25

smtp:
  host: smtp.shop.example
  tls: starttls            # starttls (587) | implicit (465) | none (25, only on localhost)
  user: support@shop.example
  password_credential: smtp-password
  connections: 8           # parallel connections for bursts
  retry_hours: 48          # keep retrying a reply the server refuses for now, this long
  stuck_alert_hours: 2     # tell the owner when replies wait longer than this

paths:
  state: /var/lib/supportd                # supportd's memory (one process owns it)
  rules: rules                            # rules/*.yaml, read in name order
  replies: replies                        # replies/*.txt (+ .html)
  # reward_codes: reward-codes.txt        # one thank-you code per line, used once each

hours:                     # when a person answers: the ETA in every reply comes from here
  timezone: Europe/Berlin
  days: [mon, tue, wed, thu, fri]
  open: "09:00"
  close: "17:00"
  holidays: [2026-12-24, 2026-12-25, 2026-12-26, 2027-01-01]
  answer_within_hours: 8   # business hours

limits:
  acks_per_sender_per_day: 10   # per sender and per recipient; then one notice, then quiet
  max_message_bytes: 25000000   # larger mail is set aside for the owner
  confirmation_hours: 72        # how long a "please confirm" stays valid
  max_attempts: 3               # a message that fails this often is quarantined
  decision_seconds: 5           # a message that takes longer to decide is quarantined at once

digest:                    # the weekly email to the owner
  weekday: monday
  time: "08:00"
  # timezone: Europe/Berlin  (default: hours.timezone)

# orders:                  # order status for "where is my order?"
#   csv: orders.csv        # columns: order,email,status,tracking,carrier,tracking_url
#   command: [/usr/local/bin/order-status]   # or: reads {{"order":..,"email":..}} on stdin, prints JSON

# actions:                 # how a confirmed change is made; without an entry the owner is asked by mail
#   cancel_order:
#     command: [/usr/local/bin/shop-cancel-order]   # JSON on stdin; exit 0 = done; must be idempotent
#     timeout_seconds: 30
#     undo: "Changed your mind? Reply within 14 days and we restore the order."

# guard:
#   robot_senders: ["alerts-*"]    # more local parts that never get a reply
"""

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
    config.write_text(CONFIG_TEMPLATE.format(config=config), encoding="utf-8")
    for source, name in ((rules_src, "rules"), (replies_src, "replies")):
        shutil.copytree(source, folder / name, dirs_exist_ok=True)
    print(NEXT_STEPS.format(dir=folder, config=config))
    return 0

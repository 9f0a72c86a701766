"""Every setting of the config file, declared once: its key, kind, default and the comment the owner reads.

``config.py`` reads and checks the file with these defaults (keeping its ``file:line`` errors),
``supportd init`` writes its commented file from them (``init_file``), and a test holds the README's
configuration table to them. A default is written as the owner would write it in YAML ("09:00",
"monday"); ``config.py`` turns it into its typed value. ``example`` is what ``supportd init`` writes
instead of the default (a shop's own values); a setting with neither is written commented out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TEXT, INTEGER, NUMBER, YES_NO, TEXTS, TIME, PATH, DATES = (
    "text", "integer", "number", "yes/no", "list of texts", "time", "path", "list of dates")


@dataclass(frozen=True)
class Setting:
    name: str  # "section.key"; "actions.NAME.key" for each hook
    kind: str
    default: Any = None
    comment: str = ""
    example: str | None = None  # YAML written by `supportd init` instead of the default
    required: bool = False

    @property
    def section(self) -> str:
        return self.name.split(".")[0]

    @property
    def key(self) -> str:
        return self.name.rsplit(".", 1)[1]


def _server(section: str, tls: str, ports: str, user: str | None, credential: str) -> list[Setting]:
    """The keys an IMAP and an SMTP server share (``tls`` examples differ; the default is the same)."""
    return [
        Setting(f"{section}.host", TEXT, required=True, example=f"{section}.shop.example"),
        Setting(f"{section}.tls", TEXT, "implicit", ports, example=tls),
        Setting(f"{section}.port", INTEGER, comment="default: from tls (see above)"),
        Setting(f"{section}.verify_certificate", YES_NO, True,
                "keep it on; set ca_file for a private certificate authority"),
        Setting(f"{section}.ca_file", PATH, comment="a private certificate authority's certificate (PEM)"),
        Setting(f"{section}.user", TEXT, example=user),
        Setting(f"{section}.password_env", TEXT, comment="or an environment variable that holds the password"),
        Setting(f"{section}.password_file", PATH, comment="or a file only supportd can read"),
        Setting(f"{section}.password_credential", TEXT, comment="systemd LoadCredential (see the README)",
                example=credential),
        Setting(f"{section}.timeout_seconds", NUMBER, 30.0, "how long a silent server is waited for"),
    ]


SETTINGS: tuple[Setting, ...] = (
    Setting("shop.name", TEXT, "our shop", "signs every reply", example='"Example Shop"'),
    Setting("shop.support_address", TEXT, required=True, comment="the mailbox supportd answers for",
            example="support@shop.example"),
    Setting("shop.aliases", TEXTS, [], "other addresses that land in the same mailbox"),
    Setting("shop.owner_address", TEXT, required=True, comment="escalations and the weekly digest go here",
            example="owner@shop.example"),
    Setting("shop.language", TEXT, "en", "replies in this language unless replies/<code>/ has the customer's"),
    Setting("shop.staff_addresses", TEXTS, [], "people who answer customers too (never treated as customers)"),
    Setting("shop.contact_footer", TEXT, "", "at the end of every reply: how to reach a person",
            example='"Example Shop · 12 Market Street, Berlin · +49 30 1234567 · https://shop.example"'),
    Setting("shop.message_id_domain", TEXT, comment="default: the support address's domain"),
    *_server("imap", "implicit", "implicit (port 993) | starttls (port 143) | none (only on localhost)",
             "support@shop.example", "imap-password"),
    Setting("imap.folder", TEXT, "INBOX", "where customer mail arrives"),
    Setting("imap.sent_folder", TEXT, "Sent", 'a copy of every reply; "" for none'),
    Setting("imap.handled_keyword", TEXT, "$SupportdHandled", "set on handled mail (nothing is ever deleted)"),
    Setting("imap.move_handled_to", TEXT, comment="or move handled mail (needs the MOVE extension)"),
    Setting("imap.quarantine_keyword", TEXT, "$SupportdQuarantined", "set on mail supportd cannot handle"),
    Setting("imap.quarantine_folder", TEXT, comment="or move such mail to this folder"),
    Setting("imap.idle", YES_NO, True, "push via IMAP IDLE; falls back to polling"),
    Setting("imap.poll_seconds", NUMBER, 60.0, "how often to look when polling"),
    Setting("imap.idle_renew_minutes", NUMBER, 25.0, "1-29 (RFC 2177: servers may drop an IDLE after 30)"),
    *_server("smtp", "starttls", "starttls (587) | implicit (465) | none (25, only on localhost)",
             "support@shop.example", "smtp-password"),
    Setting("smtp.connections", INTEGER, 16, "the most parallel connections for bursts (1-32); fewer where the "
            "server refuses more"),
    Setting("smtp.retry_first_seconds", NUMBER, 60.0, "a refused-for-now reply is retried after this, doubling"),
    Setting("smtp.retry_hours", NUMBER, 48.0, "keep retrying a reply the server refuses for now, this long"),
    Setting("smtp.stuck_alert_hours", NUMBER, 2.0, "tell the owner when replies wait longer than this"),
    Setting("paths.state", PATH, "state", "supportd's memory (one process owns it)", example="/var/lib/supportd"),
    Setting("paths.rules", PATH, "rules", "rules/*.yaml, read in name order", example="rules"),
    Setting("paths.replies", PATH, "replies", "replies/*.txt (+ .html)", example="replies"),
    Setting("paths.reward_codes", PATH, comment="one thank-you code per line, used once each"),
    Setting("hours.timezone", TEXT, "UTC", "the ETA in every reply comes from these hours",
            example="Europe/Berlin"),
    Setting("hours.days", TEXTS, ["mon", "tue", "wed", "thu", "fri"], "the working days",
            example="[mon, tue, wed, thu, fri]"),
    Setting("hours.open", TIME, "09:00", "in quotes", example='"09:00"'),
    Setting("hours.close", TIME, "17:00", "later than open", example='"17:00"'),
    Setting("hours.holidays", DATES, [], "days off", example="[2026-12-24, 2026-12-25, 2026-12-26, 2027-01-01]"),
    Setting("hours.answer_within_hours", NUMBER, 8.0, "business hours"),
    Setting("limits.acks_per_sender_per_day", INTEGER, 10,
            "per sender and per recipient; then one notice, then quiet"),
    Setting("limits.max_message_bytes", INTEGER, 25_000_000, "larger mail is set aside for the owner"),
    Setting("limits.confirmation_hours", NUMBER, 72.0, 'how long a "please confirm" stays valid'),
    Setting("limits.max_attempts", INTEGER, 3, "a message that fails this often (1-3) is quarantined"),
    Setting("limits.batch_size", INTEGER, 50, "messages fetched and decided together"),
    Setting("limits.bad_tokens_per_sender_per_day", INTEGER, 5, "wrong confirmation codes before a sender is ignored"),
    Setting("limits.decision_seconds", NUMBER, 5.0, "a message that takes longer to decide is quarantined at once"),
    Setting("limits.read_ahead_processes", INTEGER, 1,
            "processes that read a backlog's next batch ahead (0: off; at most the cores less one)"),
    Setting("digest.weekday", TEXT, "monday", "a day's name"),
    Setting("digest.time", TIME, "08:00", "in quotes", example='"08:00"'),
    Setting("digest.timezone", TEXT, comment="default: hours.timezone"),
    Setting("orders.csv", PATH, comment="columns: order,email,status,tracking,carrier,tracking_url"),
    Setting("orders.command", TEXTS, [], 'or a command: reads {"order":..,"email":..} on stdin, prints JSON'),
    Setting("orders.timeout_seconds", NUMBER, 10.0, "how long the command may take"),
    Setting("actions.NAME.command", TEXTS, required=True,
            comment="how a confirmed change is made: JSON on stdin; exit 0 = done; must be idempotent"),
    Setting("actions.NAME.timeout_seconds", NUMBER, 30.0, "how long the command may take"),
    Setting("actions.NAME.undo", TEXT, "", "told to the customer when it is done"),
    Setting("guard.robot_senders", TEXTS, [], 'more local parts that never get a reply, e.g. ["alerts-*"]'),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
# Said above each section in the file `supportd init` writes.
SECTION_COMMENTS = {
    "shop": "who we are",
    "imap": "where customer mail arrives (the password is never written here)",
    "smtp": "how replies leave",
    "paths": "relative to this file's folder",
    "hours": "when a person answers",
    "limits": "caps and limits",
    "digest": "the weekly email to the owner",
    "orders": 'order status for "where is my order?" (csv or command)',
    "actions": "one entry per action (e.g. cancel_order); without one the owner is asked by mail",
    "guard": "who never gets a reply",
}
INIT_HEADER = """\
# supportd configuration, written by `supportd init` from supportd's declared settings: every
# setting with its default or an example. `supportd check --config {config}` checks it.
# Paths are relative to this file's folder. Passwords are never written here: see password_env,
# password_file and password_credential below. Lines starting with '#' are defaults or options.
"""


def default(name: str) -> Any:
    """The declared default of ``section.key`` (as YAML would give it)."""
    return BY_NAME[name].default


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(item) for item in value) + "]"
    if isinstance(value, str) and (not value or value[0] in "$*\"'{[&!|>%@`#" or ":" in value or " " in value):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _line(indent: str, setting: Setting, whole_line_commented: bool = False) -> str:
    value = setting.example if setting.example is not None else _yaml(setting.default)
    if whole_line_commented:
        text = f"#{indent}{setting.key}:{' ' + value if setting.default is not None else ''}"
    elif setting.example is None and setting.default is None:  # an option without a default: commented out
        text = f"{indent}# {setting.key}:"
    else:
        text = f"{indent}{setting.key}: {value}"
    return f"{text:<42}  # {setting.comment}" if setting.comment else text


def init_file(config: str) -> str:
    """The commented config ``supportd init`` writes: every declared setting, in declaration order."""
    out = [INIT_HEADER.format(config=config)]
    sections: dict[str, list[Setting]] = {}
    for setting in SETTINGS:
        sections.setdefault(setting.section, []).append(setting)
    for section, settings in sections.items():
        if section == "actions":  # a mapping of the owner's own names: shown as an example, commented out
            out.append(f"{'# actions:':<42}  # {SECTION_COMMENTS[section]}")
            out.append("#   cancel_order:")
            out.extend(_line("     ", s, whole_line_commented=True) for s in settings)
        else:
            out.append(f"{section + ':':<42}  # {SECTION_COMMENTS[section]}")
            out.extend(_line("  ", s) for s in settings)
        out.append("")
    return "\n".join(out)

"""The owner's config file: typed settings, checked at start, every problem as ``file:line: what to do``.

Passwords are never written in the config itself: it names where to read them (an environment
variable, a file, or a systemd credential), and the ``Secret`` that holds them never prints them.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supportd.base.errors import InvalidFiles, Problem
from supportd.base.settings import default as D
from supportd.base.yamlfile import Section, YList, load_yaml, parse_clock_time

TLS_MODES = ("none", "starttls", "implicit")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_READ_AHEAD_PROCESSES = 8  # each one a Python process of ~30 MB; more than the cores is no faster
DEFAULT_ROBOT_SENDERS = (
    "mailer-daemon", "postmaster", "post_master", "no-reply", "noreply", "do-not-reply", "donotreply",
    "*-request", "owner-*", "*-bounces", "bounces", "bounce", "listserv", "majordomo",
)


def weekday_numbers(names: list[str]) -> list[int]:
    """Monday is 0: ``["mon", "Friday"]`` -> ``[0, 4]`` (names that are no weekday are left out)."""
    return [WEEKDAYS.index(n.strip().lower()[:3]) for n in names if n.strip().lower()[:3] in WEEKDAYS]


def _clock(text: str) -> tuple[int, int]:
    parsed = parse_clock_time(text)
    assert parsed is not None, text
    return parsed


class Secret:
    """A password read when needed from where the config says; shows its source, never its value."""

    def __init__(self, source: str, reader: Any) -> None:
        self.source = source
        self._reader = reader

    def reveal(self) -> str:
        value: str = self._reader()
        return value

    def __repr__(self) -> str:
        return f"<secret from {self.source}>"

    __str__ = __repr__


def _read_env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(f"the environment variable {name} (password_env) is not set")
    return value


def _read_file(path: Path) -> str:
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def _read_credential(name: str) -> str:
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        raise RuntimeError(
            f"password_credential '{name}' needs systemd's LoadCredential "
            "($CREDENTIALS_DIRECTORY is not set)"
        )
    return _read_file(Path(folder) / name)


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    tls: str
    verify_certificate: bool = D("imap.verify_certificate")
    ca_file: Path | None = None
    user: str | None = None
    password: Secret | None = None
    timeout_seconds: float = D("imap.timeout_seconds")


@dataclass(frozen=True)
class ImapConfig:
    server: ServerConfig
    folder: str = D("imap.folder")
    sent_folder: str | None = D("imap.sent_folder")
    handled_keyword: str = D("imap.handled_keyword")
    move_handled_to: str | None = None
    quarantine_keyword: str = D("imap.quarantine_keyword")
    quarantine_folder: str | None = None
    use_idle: bool = D("imap.idle")
    poll_seconds: float = D("imap.poll_seconds")
    idle_renew_seconds: float = D("imap.idle_renew_minutes") * 60


@dataclass(frozen=True)
class SmtpConfig:
    server: ServerConfig
    connections: int = D("smtp.connections")
    retry_first_seconds: float = D("smtp.retry_first_seconds")
    retry_hours: float = D("smtp.retry_hours")
    stuck_alert_hours: float = D("smtp.stuck_alert_hours")


@dataclass(frozen=True)
class ShopConfig:
    name: str
    support_address: str
    owner_address: str
    aliases: tuple[str, ...] = ()
    contact_footer: str = D("shop.contact_footer")
    message_id_domain: str = ""
    language: str = D("shop.language")  # replies in this language when the customer's has no templates
    staff_addresses: tuple[str, ...] = ()

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset(a.lower() for a in (self.support_address, *self.aliases))

    @property
    def people(self) -> frozenset[str]:
        """The owner and the staff: who may answer supportd's alerts, and whose mail is never a customer's."""
        return frozenset(a.lower() for a in (self.owner_address, *self.staff_addresses))


@dataclass(frozen=True)
class HoursConfig:
    timezone: str = D("hours.timezone")
    days: tuple[int, ...] = tuple(weekday_numbers(D("hours.days")))
    opens: tuple[int, int] = _clock(D("hours.open"))
    closes: tuple[int, int] = _clock(D("hours.close"))
    holidays: frozenset[dt.date] = frozenset()
    answer_within_hours: float = D("hours.answer_within_hours")


@dataclass(frozen=True)
class LimitsConfig:
    acks_per_sender_per_day: int = D("limits.acks_per_sender_per_day")
    max_message_bytes: int = D("limits.max_message_bytes")
    confirmation_hours: float = D("limits.confirmation_hours")
    max_attempts: int = D("limits.max_attempts")
    batch_size: int = D("limits.batch_size")
    bad_tokens_per_sender_per_day: int = D("limits.bad_tokens_per_sender_per_day")
    decision_seconds: float = D("limits.decision_seconds")
    read_ahead_processes: int = D("limits.read_ahead_processes")


@dataclass(frozen=True)
class DigestConfig:
    weekday: int = weekday_numbers([D("digest.weekday")])[0]
    time: tuple[int, int] = _clock(D("digest.time"))
    timezone: str = D("hours.timezone")


@dataclass(frozen=True)
class HookConfig:
    command: tuple[str, ...]
    timeout_seconds: float = D("actions.NAME.timeout_seconds")
    undo: str = D("actions.NAME.undo")


@dataclass(frozen=True)
class OrdersConfig:
    csv_file: Path | None = None
    command: tuple[str, ...] = ()
    timeout_seconds: float = D("orders.timeout_seconds")


@dataclass(frozen=True)
class Config:
    source: Path | None
    shop: ShopConfig
    imap: ImapConfig
    smtp: SmtpConfig
    state_dir: Path
    rules_dir: Path
    replies_dir: Path
    hours: HoursConfig = field(default_factory=HoursConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    digest: DigestConfig = field(default_factory=DigestConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    hooks: dict[str, HookConfig] = field(default_factory=dict)
    robot_senders: tuple[str, ...] = DEFAULT_ROBOT_SENDERS
    reward_codes_file: Path | None = None


def repository_defaults() -> tuple[Path, Path]:
    """The default rules/ and replies/ folders: the repository's, or those installed with supportd."""
    import sys

    here = Path(__file__).resolve().parents[2]
    for base in (here, Path(sys.prefix) / "share" / "supportd"):
        if (base / "rules").is_dir() and (base / "replies").is_dir():
            return base / "rules", base / "replies"
    return here / "rules", here / "replies"


def offline_config(support_address: str = "support@shop.example") -> Config:
    """Settings for ``supportd try`` without a config: the default rules and replies, no servers."""
    rules_dir, replies_dir = repository_defaults()
    domain = support_address.rpartition("@")[2] or "shop.example"
    server = ServerConfig(host="127.0.0.1", port=0, tls="none")
    return Config(
        source=None,
        shop=ShopConfig(
            name="Example Shop",
            support_address=support_address,
            owner_address=f"owner@{domain}",
            contact_footer=f"Example Shop · {support_address} · +49 30 1234567",
            message_id_domain=domain,
        ),
        imap=ImapConfig(server=server),
        smtp=SmtpConfig(server=server),
        state_dir=Path("/nonexistent-supportd-state"),
        rules_dir=rules_dir,
        replies_dir=replies_dir,
    )


# ---------------------------------------------------------------- reading the file


class _Reader:
    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.file = str(path)
        self.problems = problems

    def declared(self, section: Section, key: str, kind: type) -> Any:
        """``section.key`` read as ``kind``, with its declared default (supportd/base/settings.py)."""
        return section.take(key, kind, D(f"{section.where}.{key}"))

    def path_value(self, section: Section, key: str, default: str | None = None) -> Path | None:
        value = section.take(key, str, default)
        if value is None:
            return None
        candidate = Path(os.path.expanduser(value))
        return candidate if candidate.is_absolute() else self.base / candidate

    def secret(self, section: Section) -> Secret | None:
        sources = [k for k in ("password_env", "password_file", "password_credential") if section.has(k)]
        env = section.take("password_env", str)
        file = self.path_value(section, "password_file")
        credential = section.take("password_credential", str)
        if section.has("password"):
            section.known.append("password")
            section.error(
                section.line_of("password"),
                f"{section.where}: do not write the password in the config; use password_env "
                "(an environment variable), password_file (a file only supportd can read) or "
                "password_credential (systemd LoadCredential)",
            )
        if len(sources) > 1:
            section.error(section.line_of(sources[1]),
                          f"{section.where}: give the password one way only, not {' and '.join(sources)}")
        if env:
            return Secret(f"environment variable {env}", lambda: _read_env(env))
        if file is not None:
            return Secret(f"file {file}", lambda: _read_file(file))
        if credential:
            return Secret(f"credential {credential}", lambda: _read_credential(credential))
        return None

    def server(self, section: Section, default_port: dict[str, int]) -> ServerConfig:
        tls = section.take_choice("tls", TLS_MODES, D(f"{section.where}.tls"))
        host = section.take("host", str, "", required=True)
        port = section.take("port", int, default_port[tls])
        if not 0 < port < 65536:
            section.error(section.line_of("port"), f"{section.where}.port must be 1-65535")
        verify = self.declared(section, "verify_certificate", bool)
        ca_file = self.path_value(section, "ca_file")
        user = section.take("user", str)
        password = self.secret(section)
        if user and password is None:
            section.error(section.line, f"{section.where}: 'user' is set but no password_env, "
                                        "password_file or password_credential")
        timeout = self.declared(section, "timeout_seconds", float)
        return ServerConfig(host=host, port=port, tls=tls, verify_certificate=verify,
                            ca_file=ca_file, user=user, password=password, timeout_seconds=timeout)

    def shop(self, section: Section) -> ShopConfig:
        support = section.take("support_address", str, "", required=True)
        owner = section.take("owner_address", str, "", required=True)
        for key, value in (("support_address", support), ("owner_address", owner)):
            if value and "@" not in value:
                section.error(section.line_of(key), f"shop.{key} '{value}' is not an email address")
        name = self.declared(section, "name", str)
        aliases = tuple(section.take_strings("aliases"))
        footer = self.declared(section, "contact_footer", str)
        domain = section.take("message_id_domain", str, support.rpartition("@")[2] or "localhost")
        language = self.declared(section, "language", str).strip().lower() or D("shop.language")
        staff = tuple(section.take_strings("staff_addresses"))
        for address in staff:
            if "@" not in address:
                section.error(section.line_of("staff_addresses"),
                              f"shop.staff_addresses: '{address}' is not an email address")
        section.finish()
        return ShopConfig(name=name, support_address=support, owner_address=owner, aliases=aliases,
                          contact_footer=footer.strip(), message_id_domain=domain, language=language,
                          staff_addresses=staff)

    def imap(self, section: Section) -> ImapConfig:
        server = self.server(section, {"none": 143, "starttls": 143, "implicit": 993})
        result = ImapConfig(
            server=server,
            folder=self.declared(section, "folder", str),
            sent_folder=self.declared(section, "sent_folder", str) or None,
            handled_keyword=self.declared(section, "handled_keyword", str),
            move_handled_to=section.take("move_handled_to", str),
            quarantine_keyword=self.declared(section, "quarantine_keyword", str),
            quarantine_folder=section.take("quarantine_folder", str),
            use_idle=self.declared(section, "idle", bool),
            poll_seconds=self.declared(section, "poll_seconds", float),
            idle_renew_seconds=self.declared(section, "idle_renew_minutes", float) * 60,
        )
        if not 1 <= result.idle_renew_seconds / 60 <= 29:
            section.error(section.line_of("idle_renew_minutes"),
                          "imap.idle_renew_minutes must be between 1 and 29 (RFC 2177: servers may "
                          "drop an IDLE after 30 minutes)")
        for key in ("handled_keyword", "quarantine_keyword"):
            value = getattr(result, key)
            if not value or any(c in value for c in ' ()]{%*"\\'):
                section.error(section.line_of(key), f"imap.{key} '{value}' is not a valid IMAP keyword")
        section.finish()
        return result

    def smtp(self, section: Section) -> SmtpConfig:
        server = self.server(section, {"none": 25, "starttls": 587, "implicit": 465})
        connections = self.declared(section, "connections", int)
        if not 1 <= connections <= 32:
            section.error(section.line_of("connections"), "smtp.connections must be 1-32")
        result = SmtpConfig(
            server=server,
            connections=connections,
            retry_first_seconds=self.declared(section, "retry_first_seconds", float),
            retry_hours=self.declared(section, "retry_hours", float),
            stuck_alert_hours=self.declared(section, "stuck_alert_hours", float),
        )
        section.finish()
        return result

    def timezone(self, section: Section, key: str, default: str) -> str:
        name = section.take(key, str, default)
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            section.error(section.line_of(key), f"{section.where}.{key} '{name}' is not a known time "
                                                "zone; write it like 'Europe/Berlin'")
            return default
        return str(name)

    def clock_time(self, section: Section, key: str, default: tuple[int, int]) -> tuple[int, int]:
        section.known.append(key)
        if key not in section.data:
            return default
        parsed = parse_clock_time(section.data[key])
        if parsed is None:
            section.error(section.line_of(key),
                          f"{section.where}.{key} must be a time in quotes, like \"09:00\"")
            return default
        return parsed

    def weekdays(self, section: Section, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        names = section.take_strings(key)
        if not names:
            return default
        days = []
        for name in names:
            short = name.strip().lower()[:3]
            if short not in WEEKDAYS:
                section.error(section.line_of(key), f"{section.where}.{key}: '{name}' is not a weekday")
                continue
            days.append(WEEKDAYS.index(short))
        return tuple(sorted(set(days)))

    def hours(self, section: Section) -> HoursConfig:
        holidays: set[dt.date] = set()
        raw = section.data.get("holidays")
        section.known.append("holidays")
        if isinstance(raw, YList):
            for index, item in enumerate(raw):
                try:
                    holidays.add(item if isinstance(item, dt.date) else dt.date.fromisoformat(str(item)))
                except ValueError:
                    section.error(raw.line_of(index), f"hours.holidays: '{item}' is not a date like 2026-12-24")
        elif raw is not None:
            section.error(section.line_of("holidays"), "hours.holidays must be a list of dates")
        result = HoursConfig(
            timezone=self.timezone(section, "timezone", D("hours.timezone")),
            days=self.weekdays(section, "days", HoursConfig.days),
            opens=self.clock_time(section, "open", HoursConfig.opens),
            closes=self.clock_time(section, "close", HoursConfig.closes),
            holidays=frozenset(holidays),
            answer_within_hours=self.declared(section, "answer_within_hours", float),
        )
        if result.closes <= result.opens:
            section.error(section.line_of("close"), "hours.close must be later than hours.open")
        section.finish()
        return result

    def limits(self, section: Section) -> LimitsConfig:
        result = LimitsConfig(
            acks_per_sender_per_day=self.declared(section, "acks_per_sender_per_day", int),
            max_message_bytes=self.declared(section, "max_message_bytes", int),
            confirmation_hours=self.declared(section, "confirmation_hours", float),
            max_attempts=self.declared(section, "max_attempts", int),
            batch_size=self.declared(section, "batch_size", int),
            bad_tokens_per_sender_per_day=self.declared(section, "bad_tokens_per_sender_per_day", int),
            decision_seconds=self.declared(section, "decision_seconds", float),
            read_ahead_processes=self.declared(section, "read_ahead_processes", int),
        )
        if result.decision_seconds <= 0:
            section.error(section.line_of("decision_seconds"), "limits.decision_seconds must be more than 0")
        if not 0 <= result.read_ahead_processes <= MAX_READ_AHEAD_PROCESSES:
            section.error(section.line_of("read_ahead_processes"),
                          f"limits.read_ahead_processes must be 0 to {MAX_READ_AHEAD_PROCESSES}")
        if not 1 <= result.max_attempts <= 3:
            section.error(section.line_of("max_attempts"), "limits.max_attempts must be 1, 2 or 3")
        section.finish()
        return result

    def digest(self, section: Section, default_tz: str) -> DigestConfig:
        weekday = self.weekdays(section, "weekday", (DigestConfig.weekday,))
        result = DigestConfig(
            weekday=weekday[0] if weekday else DigestConfig.weekday,
            time=self.clock_time(section, "time", DigestConfig.time),
            timezone=self.timezone(section, "timezone", default_tz),
        )
        section.finish()
        return result

    def orders(self, section: Section) -> OrdersConfig:
        result = OrdersConfig(
            csv_file=self.path_value(section, "csv"),
            command=tuple(section.take_strings("command")),
            timeout_seconds=self.declared(section, "timeout_seconds", float),
        )
        if result.csv_file is not None and result.command:
            section.error(section.line, "orders: give either 'csv' or 'command', not both")
        section.finish()
        return result

    def hooks(self, section: Section) -> dict[str, HookConfig]:
        hooks = {}
        for name in list(section.data):
            hook = section.take_section(name)
            command = tuple(hook.take_strings("command"))
            if not command:
                hook.error(hook.line, f"actions.{name}: 'command' is missing (a list: [program, arg, ...])")
            hooks[name] = HookConfig(
                command=command,
                timeout_seconds=hook.take("timeout_seconds", float, D("actions.NAME.timeout_seconds")),
                undo=hook.take("undo", str, D("actions.NAME.undo")),
            )
            hook.finish()
        return hooks


def load_config(path: Path) -> Config:
    """Read and check the config file; raises ``InvalidFiles`` listing every problem."""
    problems: list[Problem] = []
    data = load_yaml(path, str(path), problems)
    if problems:
        raise InvalidFiles(problems)
    reader = _Reader(path, problems)
    top = Section(data, str(path), problems, "")
    shop = reader.shop(top.take_section("shop"))
    imap = reader.imap(top.take_section("imap"))
    smtp = reader.smtp(top.take_section("smtp"))
    paths = top.take_section("paths")
    state_dir = reader.path_value(paths, "state", D("paths.state"))
    rules_dir = reader.path_value(paths, "rules", D("paths.rules"))
    replies_dir = reader.path_value(paths, "replies", D("paths.replies"))
    reward_codes = reader.path_value(paths, "reward_codes")
    paths.finish()
    hours = reader.hours(top.take_section("hours"))
    limits = reader.limits(top.take_section("limits"))
    digest = reader.digest(top.take_section("digest"), hours.timezone)
    orders = reader.orders(top.take_section("orders"))
    hooks = reader.hooks(top.take_section("actions"))
    guard = top.take_section("guard")
    robots = DEFAULT_ROBOT_SENDERS + tuple(s.lower() for s in guard.take_strings("robot_senders"))
    guard.finish()
    top.finish()
    if problems:
        raise InvalidFiles(problems)
    assert state_dir and rules_dir and replies_dir
    return Config(source=path, shop=shop, imap=imap, smtp=smtp, state_dir=state_dir,
                  rules_dir=rules_dir, replies_dir=replies_dir, hours=hours, limits=limits,
                  digest=digest, orders=orders, hooks=hooks, robot_senders=robots,
                  reward_codes_file=reward_codes)

"""The loop: connect, handle what is new, wait for more (IDLE or polling), and keep going.

Signals: SIGTERM or SIGINT finishes the batch in hand, commits, and exits (well within the 10
seconds systemd is given); SIGHUP reloads supportd.yaml, the rules and the replies (an edit of a
rule file reloads too). A broken edit is reported (file:line in the log and, once, to the owner)
and the running config stays in use. IMAP and SMTP outages are waited out with exponential backoff
and jitter; nothing is lost meanwhile, because nothing is marked handled before its reply is sent.

Health: READY=1 goes to systemd only after the first IMAP login worked. A refused login (IMAP or
SMTP) is the settings' fault, not the mail's: it shows in systemd's STATUS= line and in
``supportd status``, the owner is told once a day by the first channel that works (a mail when
SMTP works, else a message put into the support mailbox itself), and supportd carries on by itself
once the password is fixed (it is read again at every login).

The daemon is the one writer of the state: commands hand it their changes through
``requests/`` in the state folder (see ``supportd.state.writer``); it applies them between steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

from supportd.act import changes
from supportd.base.clock import Clock, SystemClock, iso, parse_iso
from supportd.base.config import Config, load_config
from supportd.base.errors import InvalidFiles, StateError
from supportd.deliver import outbox
from supportd.deliver.mailer import Mailer
from supportd.intake.inbox import RECONNECT_ERRORS, LoginRefused, Mailbox
from supportd.intake.msgids import load_secret
from supportd.owner import alerts as owner
from supportd.service import sdnotify
from supportd.service.context import Context
from supportd.service.ownerfiles import load_rules_and_replies, owner_file_stamps
from supportd.service.pipeline import PassReport, Pipeline
from supportd.service.scheduler import Jobs
from supportd.state import writer
from supportd.state.health import HealthFile
from supportd.state.ledger import Ledger

log = logging.getLogger(__name__)
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 120.0
ALERT_ERRORS: tuple[type[BaseException], ...] = (StateError, *RECONNECT_ERRORS)


@dataclass
class Backoff:
    """1 s, 2 s, 4 s ... up to 2 minutes, each with up to 30% random jitter (no thundering herd)."""

    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        base = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self.failures - 1))
        return float(base * (1 + random.uniform(0, 0.3)))

    def reset(self) -> None:
        self.failures = 0


def tell_owner_directly(config: Config, cause: str, details: str) -> bool:
    """Mail the owner without the state (when the state itself is the trouble): straight over SMTP."""
    from supportd.deliver.mailer import SENT, Envelope

    clock = SystemClock()
    mailer = Mailer(config.smtp)
    try:
        rules, replies = load_rules_and_replies(config)
        ctx = Context(config=config, rules=rules, replies=replies, ledger=Ledger.in_memory(clock), clock=clock,
                      secret=os.urandom(32))
        mail = owner.escalation(ctx, cause=cause, subject_key=ctx.local_day(), details=details)
        assert mail is not None  # a fresh in-memory ledger has sent nothing
        envelope = Envelope(mail.message_id, config.shop.support_address, mail.to, mail.raw)
        [result] = mailer.send([envelope], lambda ids: None)
    except Exception as exc:  # the owner cannot be mailed: the log and systemd's status line still say it
        log.error("could not mail the owner about it: %s", exc)
        return False
    finally:
        mailer.close()
    if result.status != SENT:
        log.error("could not mail the owner about it: %s %s", result.code, result.detail)
    return result.status == SENT


def open_context(config: Config, clock: Clock) -> Context:
    """Ledger, key, rules and replies for a process that works on the real state."""
    ledger = Ledger.open(config.state_dir, clock)
    rules, replies = load_rules_and_replies(config)
    return Context(config=config, rules=rules, replies=replies, ledger=ledger, clock=clock,
                   secret=load_secret(config.state_dir))


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.ctx = open_context(config, clock or SystemClock())
        self.mailbox = Mailbox(config.imap)
        self.mailer = Mailer(config.smtp)
        self.pipeline = Pipeline(self.ctx, self.mailbox, self.mailer, should_stop=self._between_batches)
        self.jobs = Jobs(self.ctx)
        self.stopping = threading.Event()
        self.reload_asked = False
        self.jobs_started = False
        self.file_stamps = owner_file_stamps(config)
        self.backoff = Backoff()
        self.watchdog_every = sdnotify.watchdog_interval()
        self.last_watchdog = 0.0
        self.health = HealthFile(config.state_dir, self.ctx.now())
        self.ready = False
        self.status_line = ""

    # ------------------------------------------------------------ signals

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("stopping (signal %d): finishing the message in hand", signum)
        self.stopping.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_asked = True

    # ------------------------------------------------------------ running

    def run_once(self) -> PassReport:
        """One pass: connect, handle everything new, run due jobs, send, exit."""
        self.mailbox.connect()
        try:
            self.pipeline.look_at_sent()  # a reply the owner sent meanwhile is no overdue ticket
            self.jobs.run_all()
            report = self.pipeline.run_pass()
            if self.ctx.ledger.find("outbox", state=outbox.QUEUED):
                report.sent += self.pipeline.run_pass().sent  # mail queued by the jobs
            return report
        finally:
            self.close()

    def run(self) -> int:
        """Until SIGTERM. Returns the exit code."""
        self._set_status("starting: logging in to the IMAP server")
        while not self.stopping.is_set():
            try:
                self._cycle()
                self.backoff.reset()
            except StateError as exc:
                delay = self.backoff.next_delay()
                log.error("%s; nothing is marked handled until it can; trying again in %.1f s", exc, delay)
                self.health.error(str(exc), self.ctx.now())
                self._set_status("cannot write the state folder")
                self.mailbox.close()
                self._sleep(delay)
            except LoginRefused as exc:
                self.mailbox.close()
                delay = self.backoff.next_delay()
                self._imap_login_refused(str(exc), delay)
                self._sleep(delay)
            except RECONNECT_ERRORS as exc:
                self.mailbox.close()
                delay = self.backoff.next_delay()
                log.warning("mail server connection lost (%s); trying again in %.1f s", exc, delay)
                self.health.error(f"IMAP: {exc}", self.ctx.now())
                if self.backoff.failures >= 3:  # a blip is not news; a server away for a while is
                    self.health.health.imap_problem = f"cannot reach {self.config.imap.server.host} ({exc})"
                self._set_status(f"waiting {delay:.0f} s for the mail server")
                self._sleep(delay)
        sdnotify.stopping()
        self.close()
        self.health.health.status = "stopped"
        self.health.save(force=True)
        log.info("stopped; state saved")
        return 0

    def _cycle(self) -> None:
        self._apply_requests()
        self._reload_if_asked()
        if not self.mailbox.connected:
            self.mailbox.connect()
            self._logged_in()
        self.pipeline.run_pass()
        if not self.jobs_started:  # after the first pass: it has seen the replies sent meanwhile
            self.jobs.run_all()
            self.jobs_started = True
        self.jobs.run_pending()
        self.mailbox.touch()
        self._check_health()
        if self.stopping.is_set():
            return
        timeout = min(self.config.imap.idle_renew_seconds, max(1.0, self._seconds_until_due()))
        high = int((self.ctx.ledger.meta("cursor") or {}).get("high", 0))
        self.mailbox.wait(timeout, self._keep_waiting, above=high)

    def _logged_in(self) -> None:
        if self.health.health.imap_problem:
            log.info("the IMAP server works again")
        self.health.health.imap_problem = ""
        if not self.ready:
            self.ready = True
            self.health.health.ready = True
            sdnotify.ready()
            log.info("supportd running for %s (folder %s)", self.config.shop.support_address, self.config.imap.folder)
        self._set_status(f"connected to {self.config.imap.server.host}")

    # ------------------------------------------------------------ health and the owner's alerts

    def _set_status(self, text: str) -> None:
        """systemd's STATUS= line and health.json, both only when something changed."""
        if text != self.status_line:
            self.status_line = text
            sdnotify.status(text)
        self.health.health.status = text
        if self.mailbox.last_ok is not None:
            self.health.health.imap_ok = _iso_time(self.mailbox.last_ok)
        if self.mailer.last_ok is not None:
            self.health.health.smtp_ok = _iso_time(self.mailer.last_ok)
        self.health.save()

    def _check_health(self) -> None:
        """After each pass: say what is wrong (or that all is well), and tell the owner about a refused login."""
        waiting = [e for e in self.ctx.ledger.find("outbox") if e["state"] in outbox.PENDING_STATES]
        smtp = self.mailer.login_error
        if smtp and not self.health.health.smtp_problem:
            self.health.error(f"SMTP {smtp}", self.ctx.now())
        self.health.health.smtp_problem = f"{smtp}; fix the SMTP settings" if smtp else ""
        if smtp:
            self._set_status(f"SMTP {smtp}: {len(waiting)} replies waiting until the SMTP settings work")
            self._alert_owner("smtp-login", f"supportd cannot send through {self.config.smtp.server.host}: "
                              f"{smtp}. {len(waiting)} replies are waiting and nothing is lost: they go "
                              "out by themselves once the password works (supportd reads it again at every "
                              "try; no restart needed). Check with: supportd status")
        elif waiting:
            self._set_status(f"watching {self.config.imap.folder}; {len(waiting)} replies waiting for the SMTP server")
        else:
            self._set_status(f"watching {self.config.imap.folder}; everything answered")

    def _imap_login_refused(self, why: str, delay: float) -> None:
        log.error("IMAP %s; supportd tries again in %.0f s and reads the password again each time", why, delay)
        if not self.health.health.imap_problem:
            self.health.error(f"IMAP {why}", self.ctx.now())
        self.health.health.imap_problem = f"{why}; fix the IMAP settings"
        self._set_status(f"IMAP {why}: no mail is read until that is fixed")
        self._alert_owner("imap-login", f"supportd cannot use the IMAP server {self.config.imap.server.host} as "
                          f"{self.config.imap.server.user}: {why}. No customer mail is read or answered until it "
                          "works; nothing is lost, the mail waits in the mailbox. supportd tries again by itself "
                          "and reads the password again each time: fix the password where the config says it "
                          "comes from (no restart needed), or imap.ca_file (then: systemctl reload supportd).")

    def _alert_owner(self, cause: str, details: str) -> None:
        """Once a day per cause, by the first channel that works: SMTP, else the support mailbox itself."""
        day = self.ctx.local_day()
        try:
            with self.ctx.ledger.locked():
                if owner.already_escalated(self.ctx, cause, day):
                    return
                mail = owner.escalation(self.ctx, cause=cause, subject_key=day, details=details)
                if mail is None:
                    return
                if self.mailer.login_error and self.mailbox.connected:
                    self.mailbox.append_alert(mail.raw)
                    owner.mark_escalated(self.ctx, cause, day, channel="mailbox")
                    log.warning("told the owner in the support mailbox itself (SMTP refuses our login): %s", cause)
                    return
                outbox.queue(self.ctx, mail)
                owner.mark_escalated(self.ctx, cause, day)
                self.ctx.ledger.commit()
                outbox.send(self.ctx, self.mailer, outbox.due_entries(self.ctx))  # now, even without IMAP
        except ALERT_ERRORS as exc:
            log.error("could not tell the owner about %s: %s", cause, exc)

    # ------------------------------------------------------------ requests from the command line

    def _apply_requests(self) -> None:
        """Changes handed over by commands (resolve, pending drop, digest --send), in the order they came."""
        for path in writer.waiting_requests(self.config.state_dir):
            request = writer.take_request(path)
            try:
                answer = changes.apply(self.ctx, request)
            except StateError as exc:
                answer = {"ok": False, "text": f"nothing changed: {exc}"}
            except Exception as exc:  # a bad request must not stop the daemon
                log.exception("request %s failed", path.name)
                answer = {"ok": False, "text": f"supportd could not do it: {type(exc).__name__}: {exc}"}
            try:
                writer.answer_request(path, answer)
            except OSError as exc:
                log.error("could not answer request %s: %s", path.name, exc)
                return

    def _seconds_until_due(self) -> float:
        """Until the next scheduled job or outbox retry, whichever is first."""
        seconds = self.jobs.seconds_until_next()
        now = self.ctx.now()
        for entry in self.ctx.ledger.find("outbox"):
            if entry["state"] in outbox.PENDING_STATES:
                seconds = min(seconds, (parse_iso(entry["next_at"]) - now).total_seconds())
        return max(0.0, seconds)

    def _keep_waiting(self) -> bool:
        """Asked about once a second while waiting: feed the watchdog, notice signals and edits."""
        self._feed_watchdog()
        if self.stopping.is_set() or self.reload_asked or writer.waiting_requests(self.config.state_dir):
            return False
        if owner_file_stamps(self.config) != self.file_stamps:
            self.reload_asked = True
            return False
        return True

    def _between_batches(self) -> bool:
        """Asked by the pipeline between batches: a long backlog must not starve the watchdog, nor a command."""
        self._feed_watchdog()
        self._apply_requests()
        return self.stopping.is_set()

    def _feed_watchdog(self) -> None:
        if self.watchdog_every and time.monotonic() - self.last_watchdog >= self.watchdog_every:
            sdnotify.watchdog()
            self.last_watchdog = time.monotonic()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stopping.is_set():
            self._feed_watchdog()
            self._apply_requests()  # a command's change needs no mail server
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------ reloading

    def _reload_if_asked(self) -> None:
        if not self.reload_asked:
            return
        self.reload_asked = False
        self.file_stamps = owner_file_stamps(self.config)
        sdnotify.reloading()
        try:
            config = load_config(self.config.source) if self.config.source else self.config
            rules, replies = load_rules_and_replies(config)
        except InvalidFiles as exc:
            log.error("the edited config, rules or replies have errors; still using the last good ones:\n%s", exc)
            self.health.error(f"reload refused: {exc.problems[0]}", self.ctx.now())
            self._tell_owner_files_broken(exc)
        else:
            self._use_config(config)
            self.ctx.rules, self.ctx.replies = rules, replies
            log.info("reloaded %s: %d rules for %d intents", config.source or "the rules",
                     len(rules.rules), len(rules.intents))
        sdnotify.ready()

    def _use_config(self, config: Config) -> None:
        """Switch to a newly read config; new server settings take effect with the next connection."""
        if config.state_dir != self.config.state_dir:
            log.warning("paths.state changed in the config: that takes a restart (systemctl restart supportd); "
                        "still using %s", self.config.state_dir)
            config = dataclasses.replace(config, state_dir=self.config.state_dir)
        if config.imap != self.config.imap:
            self.mailbox.close()
            self.mailbox.config = config.imap
        if config.smtp != self.config.smtp:
            self.mailer.close()
            self.mailer = self.pipeline.mailer = Mailer(config.smtp)
        self.config = self.ctx.config = config
        self.ctx.__post_init__()  # the guard's addresses follow the shop's

    def _tell_owner_files_broken(self, exc: InvalidFiles) -> None:
        text = str(exc)
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        source = str(self.config.source)
        cause = "config-broken" if any(p.file == source for p in exc.problems) else "rules-broken"
        with self.ctx.ledger.locked():
            owner.alert(
                self.ctx, cause=cause, subject_key=key,
                details="supportd could not load the edited files and keeps using the last good config, rules "
                        f"and replies until they are fixed:\n\n{text}\n\nCheck with: supportd check",
            )

    def close(self) -> None:
        self.mailbox.close()
        self.mailer.close()


def _iso_time(seconds: float) -> str:
    import datetime as dt

    return iso(dt.datetime.fromtimestamp(seconds, dt.UTC))


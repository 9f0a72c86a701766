"""The loop: connect, handle what is new, wait for more (IDLE or polling), and keep going.

Signals: SIGTERM or SIGINT finishes the batch in hand, commits, and exits (well within the 10
seconds systemd is given); SIGHUP reloads the rules and replies, as does an edit of a rule file.
A broken rule set is reported (to the log and, once, to the owner) and the last good one stays in
use. IMAP and SMTP outages are waited out with exponential backoff and jitter; nothing is lost
meanwhile, because nothing is marked handled before its reply is sent.
"""

from __future__ import annotations

import hashlib
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

from supportd import outbox, owner, sdnotify
from supportd.clock import Clock, SystemClock, parse_iso
from supportd.config import Config
from supportd.context import Context
from supportd.errors import InvalidFiles, StateError
from supportd.inbox import RECONNECT_ERRORS, Mailbox
from supportd.ledger import Ledger
from supportd.mailer import Mailer
from supportd.msgids import load_secret
from supportd.pipeline import PassReport, Pipeline
from supportd.replies import Replies
from supportd.rules import RuleSet, load_rules, rule_file_stamps
from supportd.scheduler import Jobs

log = logging.getLogger(__name__)
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 120.0


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


def load_rules_and_replies(config: Config) -> tuple[RuleSet, Replies]:
    """The owner's rules and replies, checked together; raises ``InvalidFiles``."""
    replies = Replies(config.replies_dir)
    rules = load_rules(config.rules_dir, replies.names(), extra_confirm_actions=config.hooks)
    intent_replies: dict[str, set[str]] = {}
    for rule in rules.rules:
        if rule.reply:
            intent_replies.setdefault(rule.intent, set()).add(rule.reply)
    problems = [p for p in replies.check(intent_replies) if "avoid '" not in p.message]
    if problems:
        raise InvalidFiles(problems)
    # the FAQ's answers are our words too: pasted back in a reply, they are not the customer's
    replies.more_of_our_text = [entry.answer for entry in rules.faq.entries if entry.answer]
    return rules, replies


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
        self.rule_stamps = rule_file_stamps(config.rules_dir)
        self.backoff = Backoff()
        self.watchdog_every = sdnotify.watchdog_interval()
        self.last_watchdog = 0.0

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
            self.jobs.run_all()
            report = self.pipeline.run_pass()
            if self.ctx.ledger.find("outbox", state="queued"):
                report.sent += self.pipeline.run_pass().sent  # mail queued by the jobs
            return report
        finally:
            self.close()

    def run(self) -> int:
        """Until SIGTERM. Returns the exit code."""
        sdnotify.status("starting")
        self.jobs.run_all()
        sdnotify.ready()
        log.info("supportd running for %s (folder %s)", self.config.shop.support_address, self.config.imap.folder)
        while not self.stopping.is_set():
            try:
                self._cycle()
                self.backoff.reset()
            except StateError as exc:
                delay = self.backoff.next_delay()
                log.error("%s; nothing is marked handled until it can; trying again in %.1f s", exc, delay)
                sdnotify.status("cannot write the state folder")
                self.mailbox.close()
                self._sleep(delay)
            except RECONNECT_ERRORS as exc:
                self.mailbox.close()
                delay = self.backoff.next_delay()
                log.warning("mail server connection lost (%s); trying again in %.1f s", exc, delay)
                sdnotify.status(f"waiting {delay:.0f} s for the mail server")
                self._sleep(delay)
        sdnotify.stopping()
        self.close()
        log.info("stopped; state saved")
        return 0

    def _cycle(self) -> None:
        if not self.mailbox.connected:
            self.mailbox.connect()
            sdnotify.status(f"connected to {self.config.imap.server.host}")
        self._reload_if_asked()
        self.pipeline.run_pass()
        self.jobs.run_pending()
        if self.stopping.is_set():
            return
        timeout = min(self.config.imap.idle_renew_seconds, max(1.0, self._seconds_until_due()))
        high = int((self.ctx.ledger.meta("cursor") or {}).get("high", 0))
        self.mailbox.wait(timeout, self._keep_waiting, above=high)

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
        if self.stopping.is_set() or self.reload_asked:
            return False
        if rule_file_stamps(self.config.rules_dir) != self.rule_stamps:
            self.reload_asked = True
            return False
        return True

    def _between_batches(self) -> bool:
        """Asked by the pipeline between batches: a long backlog must not starve the watchdog."""
        self._feed_watchdog()
        return self.stopping.is_set()

    def _feed_watchdog(self) -> None:
        if self.watchdog_every and time.monotonic() - self.last_watchdog >= self.watchdog_every:
            sdnotify.watchdog()
            self.last_watchdog = time.monotonic()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stopping.is_set():
            self._feed_watchdog()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------ reloading

    def _reload_if_asked(self) -> None:
        if not self.reload_asked:
            return
        self.reload_asked = False
        self.rule_stamps = rule_file_stamps(self.config.rules_dir)
        sdnotify.reloading()
        try:
            rules, replies = load_rules_and_replies(self.config)
        except InvalidFiles as exc:
            log.error("the new rules or replies have errors; still using the last good ones:\n%s", exc)
            self._tell_owner_rules_broken(exc)
        else:
            self.ctx.rules, self.ctx.replies = rules, replies
            log.info("reloaded %d rules for %d intents", len(rules.rules), len(rules.intents))
        sdnotify.ready()

    def _tell_owner_rules_broken(self, exc: InvalidFiles) -> None:
        text = str(exc)
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        with self.ctx.ledger.locked():
            mail = owner.escalation(
                self.ctx, cause="rules-broken", subject_key=key,
                details="supportd could not load the edited files and keeps using the last good rules "
                        f"and replies until they are fixed:\n\n{text}\n\nCheck with: supportd check",
            )
            if mail is not None:
                outbox.queue(self.ctx, mail)
                owner.mark_escalated(self.ctx, "rules-broken", key)

    def close(self) -> None:
        self.mailbox.close()
        self.mailer.close()


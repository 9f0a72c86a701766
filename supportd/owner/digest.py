"""The owner's week, in one email: what came in, what was promised, whether it was kept.

When: due at the configured weekday and time in the digest's time zone. ``schedule`` only decides
when to *look* (every minute, see ``supportd.service.scheduler``); whether a digest is due is decided here,
from the clock and the ledger's ``digest_last_week``: the most recent weekly moment at or before
now, not yet sent. So a digest missed while supportd was down goes out on the first pass after it
comes back, and no week is ever sent twice (the mark is committed with the queued mail). A ledger
created after this week's moment waits for next week's: the first digest never covers a week
supportd did not see.

What: facts first (numbers against the week before), then small bar charts, then the lists that
need the owner (overdue tickets, customers thinking of leaving, mail set aside), then the rest.
Everything comes from the history (``history/YYYY-MM.jsonl``) and the open tickets; the owner
sees human dates and durations, never record ids or ISO timestamps. The HTML part is the template
``templates/digest.html`` (the owner may restyle it: see ``render_html``); it uses inline styles and
tables only (what common mail clients render, no images, no external CSS); the text part carries
the same facts.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import textwrap
import traceback
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from supportd.act import pending, tickets
from supportd.act.tickets import STALE_DAYS, open_tickets
from supportd.base.clock import iso, parse_iso
from supportd.base.config import Config
from supportd.base.errors import Problem
from supportd.decide.registry import confirm_action
from supportd.deliver.envelope import FAILED, PENDING_STATES
from supportd.deliver.outbox import Outgoing, queue
from supportd.deliver.replies import Draft, Rendered, build_email, sandboxed_environment
from supportd.intake.message import Address
from supportd.intake.msgids import make_message_id
from supportd.owner.alerts import CAUSES, human_duration, human_moment
from supportd.owner.unanswered import common_questions
from supportd.service.context import Context
from supportd.state.ledger import DONE, QUARANTINED, Doc

log = logging.getLogger(__name__)
MAX_ROWS = 25
# Why a reply was held back, in the owner's words (from ``guard`` check names and skip reasons).
HELD_BACK = {
    "guard:null-sender": "bounce or system mail (empty sender)",
    "guard:no-sender": "no usable sender address",
    "guard:own-address": "mail from our own address",
    "guard:auto-submitted": "automatic reply (out of office, auto-responder)",
    "guard:list-server-sender": "mailing list (sent by its list server)",
    "guard:list-header": "mailing list or newsletter",
    "guard:precedence": "bulk or list mail",
    "guard:report": "delivery or feedback report",
    "guard:auto-reply-header": "automatic reply (auto-reply header)",
    "guard:robot-sender": "robot sender (no-reply, mailer-daemon, ...)",
    "guard:robot-subject": "automatic reply (by its subject)",
    "guard:not-addressed-to-us": "not addressed to the support address",
    "cap": "daily limit of acknowledgments to one sender reached",
    "duplicate": "another copy of a message already answered",
    "rule": "a rule says not to reply",
}
LEAVING = {"unsubscribe": "unsubscribing", "cancellation": "cancelling"}


@dataclass(frozen=True)
class Week:
    start: dt.datetime
    end: dt.datetime
    zone: zoneinfo.ZoneInfo

    @property
    def label(self) -> str:
        """'2 March to 9 March 2026' (the year once, unless the week spans two)."""
        first, last = self.start.astimezone(self.zone), self.end.astimezone(self.zone)
        year = "" if first.year == last.year else f" {first.year}"
        return f"{first.day} {first:%B}{year} to {last.day} {last:%B} {last.year}"

    def days(self) -> list[dt.date]:
        """The local calendar days the week touches, in order."""
        first = self.start.astimezone(self.zone).date()
        last = (self.end - dt.timedelta(microseconds=1)).astimezone(self.zone).date()
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass
class Tentative:
    customer: str
    intents: list[str]
    ticket: int | None
    subject: str


@dataclass
class DigestFacts:
    week: Week
    now: dt.datetime
    requests: Counter[str] = field(default_factory=Counter)  # new requests per primary intent
    requests_before: Counter[str] = field(default_factory=Counter)
    follow_ups: int = 0  # customer mail joining an existing ticket
    confirmation_answers: int = 0
    ack_seconds: list[float] = field(default_factory=list)
    held_back: Counter[str] = field(default_factory=Counter)  # reason, in words -> messages
    asked: int = 0
    confirmed: int = 0
    refused: int = 0
    expired: int = 0
    failed: int = 0
    actions_done: Counter[str] = field(default_factory=Counter)
    by_hand: int = 0
    tentative: list[Tentative] = field(default_factory=list)
    open_tickets: list[Doc] = field(default_factory=list)
    resolved: int = 0
    promises: dict[str, str] = field(default_factory=dict)  # ticket/reopened -> kept | late
    late: list[Doc] = field(default_factory=list)  # tickets answered after their due time
    set_aside: list[Doc] = field(default_factory=list)
    escalations: Counter[str] = field(default_factory=Counter)  # cause -> alerts
    alert_mails: set[tuple[str, str]] = field(default_factory=set)  # its Message-ID, or (when, about what)

    @property
    def alerts(self) -> int:
        """Alert mails: the causes one customer mail raised together went out as one alert."""
        return len(self.alert_mails)
    alerts_unsent: int = 0  # alerts the mail server refused for good, or still waiting to go out
    quarantined: list[tuple[dt.datetime, str]] = field(default_factory=list)
    unmatched: int = 0
    unmatched_words: list[tuple[str, int]] = field(default_factory=list)
    idle_rules: list[str] = field(default_factory=list)
    faq_sent: Counter[str] = field(default_factory=Counter)  # FAQ entry -> answers sent
    faq_unhelpful: Counter[str] = field(default_factory=Counter)  # FAQ entry -> "did not help" replies
    unanswered_questions: list[str] = field(default_factory=list)  # questions of mail nothing understood
    per_day: Counter[dt.date] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def overdue(self) -> list[Doc]:
        now = iso(self.now)
        return [t for t in self.open_tickets if t.get("due") and t["due"] < now]

    @property
    def held_back_total(self) -> int:
        return sum(self.held_back.values())


# ---------------------------------------------------------------- when


def latest_due_moment(ctx: Context) -> dt.datetime:
    """The most recent configured weekday+time at or before now, in the digest's time zone."""
    settings = ctx.config.digest
    zone = zoneinfo.ZoneInfo(settings.timezone)
    local_now = ctx.now().astimezone(zone)
    days_back = (local_now.weekday() - settings.weekday) % 7
    day = local_now.date() - dt.timedelta(days=days_back)
    moment = dt.datetime.combine(day, dt.time(*settings.time), zone)
    if moment > local_now:
        moment = dt.datetime.combine(day - dt.timedelta(days=7), dt.time(*settings.time), zone)
    return moment.astimezone(dt.UTC)


def week_ending(ctx: Context, moment: dt.datetime) -> Week:
    """The seven days before ``moment``."""
    return Week(start=moment - dt.timedelta(days=7), end=moment, zone=zoneinfo.ZoneInfo(ctx.config.digest.timezone))


def send_if_due(ctx: Context) -> Outgoing | None:
    """Queue this week's digest when it is due and not yet sent (also after downtime)."""
    moment = latest_due_moment(ctx)
    last = ctx.ledger.meta("digest_last_week")
    created = ctx.ledger.meta("created")
    if last is None and created and parse_iso(created) > moment:
        return None  # installed after this week's moment: the first digest is next week's
    if last is not None and last >= iso(moment):
        return None
    mail = compose_digest(ctx, week_ending(ctx, moment))
    queue(ctx, mail)
    ctx.ledger.set_meta("digest_last_week", iso(moment))
    ctx.ledger.record("digest", iso(moment))
    return mail


# ---------------------------------------------------------------- what


def message_kind(record: Doc) -> str:
    """What a finished message was: 'new', 'follow-up', 'confirmation', 'held', 'shop' (from the owner or
    staff: a reply on a ticket or a command), 'quarantined' or 'other'."""
    if record.get("state") == QUARANTINED:
        return "quarantined"
    if record.get("state") != DONE or "primary_intent" not in record:
        return "other"  # vanished, or answered before a state recovery
    skip = str(record.get("skip_reason") or "")
    if skip.startswith("shop:"):
        return "shop"
    if record.get("confirmation"):
        return "confirmation"
    if record.get("thread") == "follow-up" or skip.startswith("follow-up"):
        return "follow-up"
    if skip.startswith(("guard:", "duplicate")):
        return "held"
    return "new"


def gather(ctx: Context, week: Week) -> DigestFacts:
    """Every fact of the digest, from the history of the week (and the one before) and the open tickets."""
    facts = DigestFacts(week=week, now=ctx.now())
    records = list(ctx.ledger.history.read(week.start, week.end))
    messages = {r["id"]: r for r in records if r.get("type") == "message"}
    for record in ctx.ledger.history.read(week.start - dt.timedelta(days=7), week.start):
        if record.get("type") == "message" and message_kind(record) == "new":
            facts.requests_before[record["primary_intent"]] += 1
    matched_rules: set[str] = set()
    shared_words: Counter[str] = Counter()
    for record in messages.values():
        _count_message(ctx, facts, record, matched_rules, shared_words)
    first_reply: dict[str, str] = {}
    for record in records:
        _count_record(facts, record, first_reply)
    for key, sent_at in first_reply.items():
        message = messages.get(key)
        if message and message.get("received") and message_kind(message) == "new":
            answered_after = (parse_iso(sent_at) - parse_iso(message["received"])).total_seconds()
            facts.ack_seconds.append(max(0.0, answered_after) + float(message.get("waited", 0.0)))
    facts.alerts_unsent += sum(1 for e in ctx.ledger.find("outbox") if e.get("kind") == "owner"
                               and e.get("state") in PENDING_STATES)
    facts.open_tickets = open_tickets(ctx)
    shared = [(word, n) for word, n in shared_words.items() if n > 1]
    facts.unmatched_words = sorted(shared, key=lambda item: (-item[1], item[0]))[:8]
    if facts.total or facts.follow_ups:
        facts.idle_rules = [name for name in ctx.rules.rule_names if name not in matched_rules]
    return facts


def _count_message(ctx: Context, facts: DigestFacts, record: Doc, matched_rules: set[str],
                   shared_words: Counter[str]) -> None:
    kind = message_kind(record)
    if kind == "quarantined":
        reason = str(record.get("reason", "")).split("; last error:")[0]
        facts.quarantined.append((parse_iso(record["at"]), reason))
        return
    skip = str(record.get("skip_reason") or "")
    if kind in ("held", "new") and skip and not skip.startswith(("follow-up", "confirmation")):
        facts.held_back[held_back_reason(skip)] += 1
    if kind not in ("new", "follow-up", "confirmation"):
        return
    matched_rules.update(record.get("matched_rules") or [])
    facts.per_day[parse_iso(record["at"]).astimezone(facts.week.zone).date()] += 1
    if record.get("tentative"):
        _add_tentative(ctx, facts, record)
    if kind == "follow-up":
        facts.follow_ups += 1
        if record.get("faq_unhelpful"):
            facts.faq_unhelpful[str(record["faq_unhelpful"])] += 1
    elif kind == "confirmation":
        facts.confirmation_answers += 1
    else:
        facts.requests[record["primary_intent"]] += 1
        facts.asked += 1 if record.get("held_action") else 0
        if not record.get("matched_rules"):
            facts.unmatched += 1
            shared_words.update(set(record.get("keywords") or []))
        if record.get("faq"):
            facts.faq_sent[str(record["faq"])] += 1
        elif record.get("question"):
            facts.unanswered_questions.append(str(record["question"]))


def _add_tentative(ctx: Context, facts: DigestFacts, record: Doc) -> None:
    customer = str(record.get("sender") or "")
    if any(t.customer == customer for t in facts.tentative):
        return
    number = record.get("ticket")
    ticket = tickets.lookup(ctx, number) if number else None
    facts.tentative.append(Tentative(customer=customer, intents=list(record["tentative"]), ticket=number,
                                     subject=str(ticket.get("subject", "")) if ticket else ""))


def _count_record(facts: DigestFacts, record: Doc, first_reply: dict[str, str]) -> None:
    kind = record.get("type")
    if kind == "reply" and record.get("kind") in ("ack", "confirm", "notice") and record.get("sent_at"):
        key = str(record.get("for_key") or "")
        if key and (key not in first_reply or record["sent_at"] < first_reply[key]):
            first_reply[key] = record["sent_at"]
    elif kind == "pending":
        outcome = record.get("outcome")
        if outcome == pending.DONE:
            facts.confirmed += 1
            action = confirm_action(str(record.get("action"))).done_for_owner()
            if record.get("by_hand"):
                facts.by_hand += 1
                action += " (handed to you: no hook is configured for it)"
            facts.actions_done[action] += 1
        elif outcome == pending.FAILED:
            facts.confirmed += 1
            facts.failed += 1
        elif outcome == pending.REFUSED:
            facts.refused += 1
        elif outcome == pending.EXPIRED:
            facts.expired += 1
    elif kind == "escalation":
        facts.escalations[str(record.get("cause", "?"))] += 1
        facts.alert_mails.add(_alert_mail(record))
    elif kind == "reply" and record.get("kind") == "owner" and record.get("state") == FAILED:
        facts.alerts_unsent += 1
    elif kind == "ticket":
        if record.get("outcome") == "resolved":
            facts.resolved += 1
        elif record.get("outcome") == "stale":
            facts.set_aside.append(record)
        if record.get("promise") and str(record["id"]) not in facts.promises:
            _count_promise(facts, record)


def _alert_mail(record: Doc) -> tuple[str, str]:
    """Which alert mail an escalation went out in: its Message-ID where recorded. The causes of one mail were
    recorded a moment apart each (two milliseconds on a busy machine made one alert count as two), so the
    time is only the fallback, for records written before the ID was."""
    if record.get("mail"):
        return ("mail", str(record["mail"]))
    return (str(record.get("at")), str(record.get("id", "")).partition(":")[2])


def _count_promise(facts: DigestFacts, record: Doc) -> None:
    """A ticket answered this week, by a person or a resolve: on time or late, from the real reply time."""
    if not facts.week.start <= parse_iso(record["answered_at"]) < facts.week.end:
        return
    facts.promises[str(record["id"])] = record["promise"]
    if record["promise"] == "late":
        facts.late.append(record)


def _unsent(facts: DigestFacts) -> str:
    """Never 'sent' for an alert the mail server refused: say how many did not reach the owner."""
    if not facts.alerts_unsent:
        return ""
    return f"; {facts.alerts_unsent} of them could not be mailed to you (the mail server refused or is waiting)"


def held_back_reason(skip_reason: str) -> str:
    """'guard:list-header (List-Id: ...)' -> 'mailing list or newsletter'."""
    name = skip_reason.split(" (")[0].strip()
    return HELD_BACK.get(name) or HELD_BACK.get(name.split(":")[0], name)


# ---------------------------------------------------------------- words


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def intent_name(intent: str) -> str:
    return intent.replace("_", " ").replace("-", " ").capitalize()


def _age(ticket: Doc, now: dt.datetime) -> str:
    return human_duration((now - parse_iso(ticket["opened"])).total_seconds())


def ticket_line(ticket: Doc, now: dt.datetime) -> str:
    """'#1042 Broken mug – ada@example.org, open 3 days, 5 h overdue'."""
    line = f"#{ticket['number']} {ticket['subject'][:60]} – {ticket['customer']}, open {_age(ticket, now)}"
    if ticket.get("due") and ticket["due"] < iso(now):
        line += f", {human_duration((now - parse_iso(ticket['due'])).total_seconds())} overdue"
    return line


def headline(facts: DigestFacts) -> list[str]:
    """The facts the owner reads first, one line each."""
    before = sum(facts.requests_before.values())
    lines = [f"{_n(facts.total, 'new request')} this week ({before} the week before), "
             f"{_n(facts.follow_ups, 'follow-up')} on open conversations."]
    if facts.ack_seconds:
        lines.append(f"Acknowledged in {human_duration(statistics.median(facts.ack_seconds))} (median); "
                     f"the slowest took {human_duration(max(facts.ack_seconds))}.")
    overdue = facts.overdue
    lines.append(f"{_n(len(facts.open_tickets), 'ticket')} open, {len(overdue)} of them overdue; "
                 f"{facts.resolved} resolved this week.")
    if facts.promises:
        kept = sum(1 for p in facts.promises.values() if p == "kept")
        lines.append(f"Promised answers: {kept} kept, {len(facts.promises) - kept} late "
                     "(counted from when a person answered, by mail or supportd resolve).")
    if facts.set_aside:
        numbers = ", ".join(f"#{t['number']}" for t in facts.set_aside[:10])
        lines.append(f"{_n(len(facts.set_aside), 'ticket')} overdue for over {STALE_DAYS} days set aside as stale "
                     f"({numbers}); a reply from the customer opens it again.")
    if facts.asked or facts.confirmed or facts.refused or facts.expired:
        lines.append(f"Confirmations: {facts.asked} asked, {facts.confirmed} confirmed, {facts.refused} refused, "
                     f"{facts.expired} expired; {_changes(facts)}.")
    if facts.tentative:
        lines.append(f"{_n(len(facts.tentative), 'customer')} mentioned leaving without asking to: "
                     "worth a personal note.")
    alerts = facts.alerts
    if alerts:
        lines.append(f"{_n(alerts, 'alert')} for you during the week{_unsent(facts)}.")
    if facts.quarantined:
        lines.append(f"{_n(len(facts.quarantined), 'message')} set aside for you: supportd could not handle "
                     f"{'it' if len(facts.quarantined) == 1 else 'them'}.")
    if facts.held_back_total:
        lines.append(f"{_n(facts.held_back_total, 'message')} got no automatic reply (robots, lists, "
                     "limits).")
    if facts.faq_sent:
        unhelpful = sum(facts.faq_unhelpful.values())
        lines.append(f"{_n(sum(facts.faq_sent.values()), 'question')} answered at once from the FAQ; "
                     f"{unhelpful} {'reply says' if unhelpful == 1 else 'replies say'} the answer did not help.")
    if facts.unmatched_words:
        words = ", ".join(w for w, _ in facts.unmatched_words[:4])
        lines.append(f"Mail no rule understood shares the words {words}: a candidate for a new rule.")
    return lines


@dataclass(frozen=True)
class Section:
    """One list of the digest, the same in both parts."""

    title: str
    items: list[str]
    note: str = ""


def sections(facts: DigestFacts) -> list[Section]:
    """The lists after the headline and the charts, the ones that need the owner first."""
    now, zone = facts.now, facts.week.zone.key
    overdue_numbers = {t["number"] for t in facts.overdue}
    result = [
        Section("Overdue tickets", [ticket_line(t, now) for t in facts.overdue],
                "close one with: supportd resolve NUMBER --message \"...\""),
        Section("Answered after the promised time", [
            f"#{t['number']} {str(t.get('subject', ''))[:60]} – {t.get('customer', '')}, answered "
            f"{human_duration((parse_iso(t['answered_at']) - parse_iso(t['promised'])).total_seconds())} late"
            for t in facts.late]),
        Section("Customers who mentioned leaving (to win back)", [
            f"{t.customer}: mentioned {', '.join(LEAVING.get(i, intent_name(i).lower()) for i in t.intents)}"
            + (f" (ticket #{t.ticket}{': ' + t.subject[:50] if t.subject else ''})" if t.ticket else "")
            for t in facts.tentative]),
        Section("Set aside for you (quarantined)", [
            f"{human_moment(when, zone, now)}: {reason}" for when, reason in facts.quarantined],
            "still in the mailbox, marked; please read and answer them yourself"),
        Section("Open tickets", [ticket_line(t, now) for t in facts.open_tickets
                                 if t["number"] not in overdue_numbers]),
        Section("Replies held back, and why", [f"{n} × {reason}" for reason, n in facts.held_back.most_common()]),
        Section("Confirmations", _confirmation_items(facts)),
        Section("Alerts for you", [f"{n} × {CAUSES.get(cause, cause)}"
                                   for cause, n in facts.escalations.most_common()]
                + ([f"{facts.alerts_unsent} of them did not reach you by mail (see supportd status)"]
                   if facts.alerts_unsent else [])),
    ]
    if facts.unmatched:
        shared = ", ".join(f"{w} ({n})" for w, n in facts.unmatched_words) or "none shared by two or more"
        result.append(Section("Mail no rule understood", [
            f"{_n(facts.unmatched, 'message')} matched no rule; the words they share: {shared}"],
            "a new rule in rules/ could answer such mail better; supportd try shows what a message hits"))
    result.extend(_faq_sections(facts))
    if facts.idle_rules:
        result.append(Section("Rules that matched nothing this week", [", ".join(facts.idle_rules)]))
    return [s for s in result if s.items]


def _faq_sections(facts: DigestFacts) -> list[Section]:
    candidates = common_questions(facts.unanswered_questions)
    return [
        Section("FAQ answers sent", [f"{n} × {entry}" for entry, n in facts.faq_sent.most_common()]),
        Section("FAQ answers customers said did not help", [
            f"{n} × {entry}" for entry, n in facts.faq_unhelpful.most_common()],
            "each went to a person with an alert; a clearer answer in rules/60-faq-*.yaml helps the next customer"),
        Section("Questions no FAQ entry answered (candidates for new entries)", [
            f"{n} × \"{example}\"" + (f" (and similar: {', '.join(words)})" if n > 1 else "")
            for example, n, words in candidates],
            "a new entry in rules/60-faq-*.yaml answers such questions at once; supportd try shows what matches"),
    ]


def _confirmation_items(facts: DigestFacts) -> list[str]:
    if not (facts.asked or facts.confirmed or facts.refused or facts.expired):
        return []
    items = [f"{facts.asked} asked, {facts.confirmed} confirmed, {facts.refused} refused, {facts.expired} expired"]
    for action, n in facts.actions_done.most_common():
        items.append(f"{n} × {action}")
    if facts.failed:
        items.append(f"{facts.failed} could not be made (you were alerted)")
    return items


def _changes(facts: DigestFacts) -> str:
    """'2 changes made, 1 handed to you to make by hand'."""
    made = sum(facts.actions_done.values()) - facts.by_hand
    parts = [f"{_n(made, 'change')} made"] if made or not facts.by_hand else []
    if facts.by_hand:
        parts.append(f"{facts.by_hand} handed to you to make by hand")
    return ", ".join(parts)


def _intents(facts: DigestFacts) -> list[str]:
    return sorted(set(facts.requests) | set(facts.requests_before), key=lambda i: (-facts.requests[i], i))


def _day_label(day: dt.date) -> str:
    return f"{day:%a} {day.day}"


# ---------------------------------------------------------------- the text part


def render_text(ctx: Context, facts: DigestFacts) -> str:
    out = [f"{ctx.config.shop.name}: your support week, {facts.week.label}", ""]
    out += [f"* {line}" for line in headline(facts)]
    out += _text_charts(facts)
    for section in sections(facts):
        out += ["", f"{section.title}:"]
        out += [textwrap.fill(item, 100, initial_indent="  - ", subsequent_indent="    ")
                for item in section.items[:MAX_ROWS]]
        if len(section.items) > MAX_ROWS:
            out.append(f"  ... and {len(section.items) - MAX_ROWS} more")
        if section.note:
            out.append(f"  ({section.note})")
    out += ["", "-- ", "supportd's weekly digest. Open tickets: supportd tickets"]
    return "\n".join(out) + "\n"


def _text_bar(value: int, largest: int) -> str:
    return "#" * round(30 * value / largest) if largest else ""


def _text_charts(facts: DigestFacts) -> list[str]:
    out: list[str] = []
    largest = max([*facts.requests.values(), *facts.requests_before.values(), 0])
    if _intents(facts):
        out += ["", "New requests per kind (this week / the week before):"]
        for intent in _intents(facts):
            this, before = facts.requests[intent], facts.requests_before[intent]
            out.append(f"  {intent_name(intent):<18} {this:>4} / {before:<4} {_text_bar(this, largest)}")
    if facts.per_day:
        day_max = max(facts.per_day.values())
        out += ["", "Customer mail per day:"]
        for day in facts.week.days():
            out.append(f"  {_day_label(day):<7} {facts.per_day[day]:>4} {_text_bar(facts.per_day[day], day_max)}")
    return out


# ---------------------------------------------------------------- the HTML part
#
# The page is a template (``templates/digest.html``, Jinja2 in the replies' sandbox, autoescaped), so the
# owner can restyle it with a copy in ``templates/`` beside their config. Here only the values are made:
# the facts in words and the bar sizes in pixels; colours, fonts and layout are the template's.

TEMPLATES = Path(__file__).resolve().parent / "templates"
HTML_TEMPLATE = "digest.html"
URGENT = ("Overdue tickets", "Set aside for you (quarantined)")


@dataclass(frozen=True)
class Tile:
    """One of the numbers at the top; ``alarm``: it needs the owner."""

    number: str
    label: str
    alarm: bool = False


@dataclass(frozen=True)
class IntentRow:
    name: str
    this: int
    before: int
    this_width: int  # bar length in pixels, 0 for none
    before_width: int


@dataclass(frozen=True)
class DayColumn:
    label: str
    count: int
    height: int  # pixels, 0 for none


@dataclass(frozen=True)
class ShownSection:
    """A ``Section`` as the page shows it: at most ``MAX_ROWS`` items, and how many were left out."""

    title: str
    items: list[str]
    more: int
    note: str
    urgent: bool


@dataclass(frozen=True)
class HtmlPart:
    """The rendered page, and why the owner's own template was not used (None when it was, or there is none)."""

    html: str
    problem: Problem | None


def _bar_size(value: int, largest: int, length: int) -> int:
    """Pixels for ``value`` on a bar of ``length`` for ``largest``; a count above 0 is never invisible."""
    return 0 if largest <= 0 or value <= 0 else max(3, round(length * value / largest))


def _tiles(facts: DigestFacts) -> list[Tile]:
    before = sum(facts.requests_before.values())
    median = human_duration(statistics.median(facts.ack_seconds)) if facts.ack_seconds else "none"
    median = "< 1 s" if median == "under a second" else median
    overdue = len(facts.overdue)
    unsent = f" ({facts.alerts_unsent} not delivered)" if facts.alerts_unsent else ""
    return [Tile(str(facts.total), f"new requests ({before} the week before)"),
            Tile(median, "median time to acknowledge"),
            Tile(f"{len(facts.open_tickets)} / {overdue}", "tickets open / overdue", bool(overdue)),
            Tile(str(facts.alerts), "alerts for you" + unsent, bool(facts.alerts_unsent))]


def _intent_rows(facts: DigestFacts) -> list[IntentRow]:
    largest = max([*facts.requests.values(), *facts.requests_before.values(), 1])
    return [IntentRow(intent_name(i), facts.requests[i], facts.requests_before[i],
                      _bar_size(facts.requests[i], largest, 220), _bar_size(facts.requests_before[i], largest, 220))
            for i in _intents(facts)]


def _day_columns(facts: DigestFacts) -> list[DayColumn]:
    if not facts.per_day:
        return []
    largest = max(facts.per_day.values())
    return [DayColumn(_day_label(day), facts.per_day[day], _bar_size(facts.per_day[day], largest, 60))
            for day in facts.week.days()]


def html_values(shop_name: str, facts: DigestFacts) -> dict[str, Any]:
    """What the HTML template is given (its header lists them for the owner)."""
    shown = [ShownSection(s.title, s.items[:MAX_ROWS], max(0, len(s.items) - MAX_ROWS), s.note, s.title in URGENT)
             for s in sections(facts)]
    return {"shop": shop_name, "week": facts.week.label, "problem": "", "tiles": _tiles(facts),
            "headline": headline(facts), "intents": _intent_rows(facts), "days": _day_columns(facts),
            "sections": shown}


def owner_template(config: Config) -> Path | None:
    """The owner's own ``templates/digest.html`` beside their config file, when there is one."""
    if config.source is None:
        return None
    path = config.source.resolve().parent / "templates" / HTML_TEMPLATE
    return path if path.is_file() else None


def render_html(config: Config, facts: DigestFacts) -> HtmlPart:
    """The page, from the owner's template when there is one that works, else from the shipped one.

    A broken owner template never costs the owner their digest: the shipped one is used, and the page
    (and the log) says which file and line did not work.
    """
    values = html_values(config.shop.name, facts)
    own = owner_template(config)
    problem = None
    if own is not None:
        try:
            return HtmlPart(_render(own.parent, values), None)
        except Exception as exc:
            problem = template_problem(own, exc)
            log.error("%s", problem)
    return HtmlPart(_render(TEMPLATES, {**values, "problem": fallback_notice(problem) if problem else ""}), problem)


def fallback_notice(problem: Problem) -> str:
    return f"your digest template could not be used ({problem}); this digest uses the shipped one."


def _render(folder: Path, values: dict[str, Any]) -> str:
    return sandboxed_environment(folder).get_template(HTML_TEMPLATE).render(values)


def template_problem(path: Path, exc: Exception) -> Problem:
    """``file:line: what is wrong`` for a template that would not render (the line from Jinja2's traceback)."""
    line = getattr(exc, "lineno", None) if isinstance(exc, jinja2.TemplateSyntaxError) else None
    if line is None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path.resolve()]
        line = frames[-1].lineno if frames else 1
    what = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
    return Problem(str(path), line or 1, f"digest template: {what} ({type(exc).__name__}); the digest uses "
                                         "the shipped template until this is fixed", warning=True)


def check_template(config: Config, now: dt.datetime) -> list[Problem]:
    """``supportd check``: the owner's digest template, rendered once with a sample week."""
    if owner_template(config) is None:
        return []
    week = Week(start=now - dt.timedelta(days=7), end=now, zone=zoneinfo.ZoneInfo(config.digest.timezone))
    facts = DigestFacts(week=week, now=now, requests=Counter({"defect": 2}), per_day=Counter({week.days()[0]: 2}))
    problem = render_html(config, facts).problem
    return [problem] if problem else []


# ---------------------------------------------------------------- the email


def compose_digest(ctx: Context, week: Week, ref: str = "") -> Outgoing:
    """The digest for ``week`` as a mail to the owner. ``ref`` tells apart digests sent by hand."""
    facts = gather(ctx, week)
    page = render_html(ctx.config, facts)
    text = render_text(ctx, facts)
    if page.problem:  # the owner hears why their template was not used, in the mail they were waiting for
        text = f"Note: {fallback_notice(page.problem)}\n\n{text}"
    rendered = Rendered(text=text, html=page.html)
    shop = ctx.config.shop
    message_id = make_message_id(ctx.secret, "digest", ref or week.end.strftime("%Y%m%d%H%M"), "digest",
                                 shop.message_id_domain)
    end = week.end.astimezone(week.zone)
    subject = (f"[supportd] your week to {end.day} {end:%B}: {_n(facts.total, 'request')}, "
               f"{len(facts.overdue)} overdue")
    msg = build_email(Draft(sender=Address(shop.name, shop.support_address), to=Address("", shop.owner_address),
                            subject=subject, rendered=rendered, message_id=message_id, date=ctx.local_now(),
                            headers={"Auto-Submitted": "auto-generated"}))
    return Outgoing(kind="owner", message_id=message_id, to=shop.owner_address, subject=subject,
                    text=rendered.text, raw=msg.as_bytes(), for_key=None, ticket=None)

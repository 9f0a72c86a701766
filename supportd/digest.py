"""The owner's week, in one email: what came in, what was promised, whether it was kept.

Due at the configured weekday and time in the shop's time zone. The ledger remembers the last
week sent, so a digest missed while supportd was down goes out when it comes back, and no week
is ever sent twice. ``supportd digest --preview`` writes the same email to files.

Facts first (numbers against the week before), then small bar charts, then the lists that need
the owner (overdue tickets, customers thinking of leaving, messages no rule understood). HTML uses
inline styles and tables only, which is what common mail clients render; the text part carries
the same facts.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import statistics
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from supportd.clock import iso, parse_iso
from supportd.context import Context
from supportd.ledger import Doc
from supportd.msgids import make_message_id
from supportd.outbox import Outgoing, queue
from supportd.replies import Rendered, build_email
from supportd.tickets import open_tickets

STOPWORDS = frozenset("""
    a an and are as at be but by can could do for from have hello hi how i if in is it its me my no not of
    on or our please so thanks thank that the there this to was we what when where which will with would
    you your yours am been did does just get got dear regards best
""".split())


@dataclass
class Week:
    start: dt.datetime
    end: dt.datetime
    label: str


@dataclass
class DigestFacts:
    week: Week
    intents: Counter[str] = field(default_factory=Counter)
    intents_before: Counter[str] = field(default_factory=Counter)
    ack_seconds: list[float] = field(default_factory=list)
    held_back: Counter[str] = field(default_factory=Counter)
    confirmations: Counter[str] = field(default_factory=Counter)
    actions_done: Counter[str] = field(default_factory=Counter)
    tentative: list[dict[str, Any]] = field(default_factory=list)
    open_tickets: list[Doc] = field(default_factory=list)
    escalations: Counter[str] = field(default_factory=Counter)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    unmatched: int = 0
    unmatched_words: list[tuple[str, int]] = field(default_factory=list)
    idle_rules: list[str] = field(default_factory=list)
    per_day: Counter[str] = field(default_factory=Counter)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def total(self) -> int:
        return sum(self.intents.values())

    @property
    def overdue(self) -> list[Doc]:
        now = iso(self.now)
        return [t for t in self.open_tickets if t.get("due") and t["due"] < now]


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
        moment -= dt.timedelta(days=7)
    return moment.astimezone(dt.UTC)


def week_ending(moment: dt.datetime) -> Week:
    start = moment - dt.timedelta(days=7)
    return Week(start=start, end=moment, label=f"{start.date().isoformat()} to {moment.date().isoformat()}")


def send_if_due(ctx: Context) -> Outgoing | None:
    """Queue this week's digest when it is due and not yet sent (also after downtime)."""
    moment = latest_due_moment(ctx)
    last = ctx.ledger.meta("digest_last_week")
    created = ctx.ledger.meta("created")
    if last is None and created and parse_iso(created) > moment:
        return None  # installed after this week's moment: the first digest is next week's
    if last is not None and last >= iso(moment):
        return None
    mail = compose_digest(ctx, week_ending(moment))
    queue(ctx, mail)
    ctx.ledger.set_meta("digest_last_week", iso(moment))
    ctx.ledger.record("digest", iso(moment), week=week_ending(moment).label)
    return mail


# ---------------------------------------------------------------- what


def gather(ctx: Context, week: Week) -> DigestFacts:
    facts = DigestFacts(week=week, now=ctx.now())
    before = Week(week.start - dt.timedelta(days=7), week.start, "")
    messages = {r["id"]: r for r in ctx.ledger.history.read(week.start, week.end) if r.get("type") == "message"}
    records = list(ctx.ledger.history.read(week.start, week.end))
    for record in ctx.ledger.history.read(before.start, before.end):
        if record.get("type") == "message" and record.get("state") == "done":
            facts.intents_before[record.get("primary_intent") or "other"] += 1
    matched_rules: set[str] = set()
    fallback = ctx.rules.fallback.name
    unmatched_words: Counter[str] = Counter()
    for record in messages.values():
        _count_message(facts, record, fallback, matched_rules, unmatched_words, ctx)
    for record in records:
        kind = record.get("type")
        if kind == "reply" and record.get("kind") in ("ack", "confirm") and record.get("sent_at"):
            message = messages.get(record.get("for_key") or "")
            if message and message.get("received"):
                seconds = (parse_iso(record["sent_at"]) - parse_iso(message["received"])).total_seconds()
                facts.ack_seconds.append(max(0.0, seconds))
        elif kind == "pending":
            facts.confirmations[record.get("outcome", "?")] += 1
            if record.get("outcome") == "done":
                facts.actions_done[record.get("action", "?")] += 1
        elif kind == "escalation":
            facts.escalations[record.get("cause", "?")] += 1
    facts.confirmations["asked"] = sum(1 for m in messages.values() if m.get("held_action"))
    facts.open_tickets = open_tickets(ctx)
    facts.unmatched_words = [(w, n) for w, n in unmatched_words.most_common(8) if n > 1]
    facts.idle_rules = [name for name in ctx.rules.rule_names if name not in matched_rules]
    return facts


def _count_message(facts: DigestFacts, record: dict[str, Any], fallback: str, matched_rules: set[str],
                   unmatched_words: Counter[str], ctx: Context) -> None:
    if record.get("state") == "quarantined":
        facts.quarantined.append(record)
        return
    if record.get("state") != "done":
        return
    intent = record.get("primary_intent") or fallback
    facts.intents[intent] += 1
    zone = zoneinfo.ZoneInfo(ctx.config.digest.timezone)
    facts.per_day[parse_iso(record["at"]).astimezone(zone).strftime("%a")] += 1
    matched_rules.update(record.get("matched_rules") or [])
    if record.get("skip_reason") and not str(record["skip_reason"]).startswith(("follow-up", "confirmation")):
        facts.held_back[_reason_name(record["skip_reason"])] += 1
    if record.get("tentative"):
        facts.tentative.append(record)
    if intent == fallback and not record.get("skip_reason"):
        facts.unmatched += 1
        unmatched_words.update(set(record.get("keywords") or []))


def _reason_name(reason: str) -> str:
    """'guard:list-header (List-Id: ...)' -> 'guard:list-header'."""
    return reason.split(" (")[0]


def keywords(text: str, limit: int = 8) -> list[str]:
    """A few telling words of a message no rule understood, for the 'candidates for a rule' list."""
    words = [w for w in re.findall(r"[a-zäöüß]{4,}", text.lower()) if w not in STOPWORDS]
    return [w for w, _ in Counter(words).most_common(limit)]


# ---------------------------------------------------------------- how it looks


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _age(opened: str, now: dt.datetime) -> str:
    hours = (now - parse_iso(opened)).total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


def headline(facts: DigestFacts) -> list[str]:
    """The facts the owner reads first, each one line."""
    before = sum(facts.intents_before.values())
    lines = [f"{facts.total} customer messages this week ({before} the week before)."]
    if facts.ack_seconds:
        lines.append(f"Acknowledged in {_duration(statistics.median(facts.ack_seconds))} (median); "
                     f"the slowest took {_duration(max(facts.ack_seconds))}.")
    overdue = facts.overdue
    lines.append(f"{len(facts.open_tickets)} tickets open, {len(overdue)} overdue.")
    asked = facts.confirmations.get("asked", 0)
    if asked or facts.confirmations:
        counts = facts.confirmations
        lines.append(f"Confirmations: {asked} asked, {counts.get('done', 0)} confirmed and done, "
                     f"{counts.get('refused', 0)} refused, {counts.get('expired', 0)} expired.")
    if facts.tentative:
        lines.append(f"{len(facts.tentative)} customers mentioned leaving without asking to: worth a personal note.")
    if facts.quarantined:
        lines.append(f"{len(facts.quarantined)} messages were set aside for you (quarantined).")
    if facts.escalations:
        lines.append(f"{sum(facts.escalations.values())} alerts were sent to you during the week.")
    return lines


def render_text(ctx: Context, facts: DigestFacts) -> str:
    out = [f"{ctx.config.shop.name}: your support week, {facts.week.label}", ""]
    out += [f"* {line}" for line in headline(facts)]
    out += ["", "Messages per intent (this week / week before):"]
    for intent in sorted(set(facts.intents) | set(facts.intents_before), key=lambda i: -facts.intents[i]):
        bar = "#" * min(40, facts.intents[intent])
        out.append(f"  {intent:<18} {facts.intents[intent]:>4} / {facts.intents_before[intent]:<4} {bar}")
    out += _text_list("Overdue tickets", [_ticket_line(t, facts.now) for t in facts.overdue])
    out += _text_list("Open tickets", [_ticket_line(t, facts.now) for t in facts.open_tickets
                                       if t not in facts.overdue])
    out += _text_list("Customers thinking of leaving (to win back)", [
        f"{r.get('sender', '?')}: mentioned {', '.join(r['tentative'])} (ticket {r.get('ticket') or '-'})"
        for r in facts.tentative])
    out += _text_list("Replies held back, and why", [f"{n} x {reason}" for reason, n in facts.held_back.most_common()])
    out += _text_list("Actions performed", [f"{n} x {action}" for action, n in facts.actions_done.most_common()])
    out += _text_list("Alerts sent to you", [f"{n} x {cause}" for cause, n in facts.escalations.most_common()])
    out += _text_list("Quarantined messages", [f"{r['id']}: {r.get('reason', '')}" for r in facts.quarantined])
    if facts.unmatched:
        words = ", ".join(f"{w} ({n})" for w, n in facts.unmatched_words) or "no shared words"
        out += ["", f"{facts.unmatched} messages matched no rule. Words they share: {words}."]
    if facts.idle_rules:
        out += ["", f"Rules that matched nothing this week: {', '.join(facts.idle_rules)}."]
    out += ["", "-- ", "supportd weekly digest"]
    return "\n".join(out) + "\n"


def _ticket_line(ticket: Doc, now: dt.datetime) -> str:
    return f"#{ticket['number']} {ticket['subject'][:60]} ({ticket['customer']}, open {_age(ticket['opened'], now)})"


def _text_list(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    return ["", f"{title}:", *[f"  - {item}" for item in items[:25]]]


CELL = "padding:4px 8px;border-bottom:1px solid #eee;font:14px Arial,Helvetica,sans-serif;"
HEAD = "font:bold 16px Arial,Helvetica,sans-serif;color:#222;margin:20px 0 6px;"


def _bar(value: int, largest: int, colour: str) -> str:
    width = 0 if largest == 0 else max(2, round(200 * value / largest))
    return (f'<table role="presentation" cellpadding="0" cellspacing="0"><tr><td style="background:{colour};'
            f'width:{width}px;height:12px;font-size:1px;line-height:1px">&nbsp;</td></tr></table>')


def _day_column(day: str, count: int, largest: int) -> str:
    height = 0 if largest == 0 else max(2, round(60 * count / largest))
    return (f'<td style="{CELL}text-align:center;vertical-align:bottom">'
            f'<div style="background:#2a7ae2;width:18px;height:{height}px;margin:0 auto"></div>'
            f'<div style="font:12px Arial,Helvetica,sans-serif;color:#555">{day}<br>{count}</div></td>')


def _html_rows(title: str, items: list[str]) -> str:
    if not items:
        return ""
    rows = "".join(f'<tr><td style="{CELL}">{html.escape(i)}</td></tr>' for i in items[:25])
    table = f'<table cellpadding="0" cellspacing="0" width="100%">{rows}</table>'
    return f'<p style="{HEAD}">{html.escape(title)}</p>{table}'


def render_html(ctx: Context, facts: DigestFacts) -> str:
    esc = html.escape
    facts_html = "".join(f'<li style="margin:4px 0;font:15px Arial,Helvetica,sans-serif">{esc(line)}</li>'
                         for line in headline(facts))
    largest = max([*facts.intents.values(), *facts.intents_before.values(), 0])
    intent_rows = "".join(
        f'<tr><td style="{CELL}">{esc(intent)}</td><td style="{CELL}text-align:right">{facts.intents[intent]}</td>'
        f'<td style="{CELL}">{_bar(facts.intents[intent], largest, "#2a7ae2")}'
        f'{_bar(facts.intents_before[intent], largest, "#c8d6ea")}</td>'
        f'<td style="{CELL}text-align:right;color:#888">{facts.intents_before[intent]}</td></tr>'
        for intent in sorted(set(facts.intents) | set(facts.intents_before), key=lambda i: -facts.intents[i])
    )
    day_max = max([*facts.per_day.values(), 0])
    day_cells = "".join(_day_column(day, facts.per_day[day], day_max)
                        for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
    parts = [
        '<!doctype html><html><body style="margin:0;padding:16px;background:#f6f6f6">',
        '<table cellpadding="0" cellspacing="0" width="100%" style="max-width:640px;background:#fff;padding:16px">',
        f'<tr><td><p style="font:bold 20px Arial,Helvetica,sans-serif;margin:0 0 4px">{esc(ctx.config.shop.name)}: '
        f'your support week</p><p style="font:13px Arial,Helvetica,sans-serif;color:#777;margin:0 0 12px">'
        f'{esc(facts.week.label)}</p><ul style="padding-left:18px;margin:0">{facts_html}</ul>',
        f'<p style="{HEAD}">Messages per intent</p><p style="font:12px Arial;color:#777;margin:0">'
        'dark: this week, light: the week before</p>'
        f'<table cellpadding="0" cellspacing="0" width="100%">{intent_rows}</table>',
        f'<p style="{HEAD}">Messages per day</p><table cellpadding="0" cellspacing="0"><tr>{day_cells}</tr></table>',
        _html_rows("Overdue tickets", [_ticket_line(t, facts.now) for t in facts.overdue]),
        _html_rows("Open tickets", [_ticket_line(t, facts.now) for t in facts.open_tickets if t not in facts.overdue]),
        _html_rows("Customers thinking of leaving (to win back)", [
            f"{r.get('sender', '?')}: mentioned {', '.join(r['tentative'])}" for r in facts.tentative]),
        _html_rows("Replies held back, and why", [f"{n} x {reason}" for reason, n in facts.held_back.most_common()]),
        _html_rows("Actions performed", [f"{n} x {a}" for a, n in facts.actions_done.most_common()]),
        _html_rows("Alerts sent to you", [f"{n} x {c}" for c, n in facts.escalations.most_common()]),
        _html_rows("Quarantined messages", [f"{r['id']}: {r.get('reason', '')}" for r in facts.quarantined]),
    ]
    if facts.unmatched:
        words = ", ".join(f"{w} ({n})" for w, n in facts.unmatched_words) or "no shared words"
        parts.append(_html_rows("Candidates for a new rule",
                                [f"{facts.unmatched} messages matched no rule; words they share: {words}"]))
    if facts.idle_rules:
        parts.append(_html_rows("Rules that matched nothing this week", [", ".join(facts.idle_rules)]))
    parts.append("</td></tr></table></body></html>")
    return "".join(parts)


def compose_digest(ctx: Context, week: Week) -> Outgoing:
    facts = gather(ctx, week)
    rendered = Rendered(text=render_text(ctx, facts), html=render_html(ctx, facts))
    shop = ctx.config.shop
    message_id = make_message_id(ctx.secret, "digest", week.end.strftime("%Y%m%d"), "digest", shop.message_id_domain)
    subject = f"[supportd] your week: {facts.total} messages, {len(facts.overdue)} overdue ({week.label})"
    msg = build_email(sender_name=shop.name, sender=shop.support_address, to_name="", to=shop.owner_address,
                      subject=subject, rendered=rendered, message_id=message_id,
                      auto_submitted="auto-generated", date=ctx.now().timestamp())
    return Outgoing(kind="owner", message_id=message_id, to=shop.owner_address, subject=subject,
                    text=rendered.text, raw=msg.as_bytes(), for_key=None, ticket=None)

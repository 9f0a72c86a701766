"""What to do about one message: a ``Plan`` computed without writing, then applied in one go.

``plan_message`` reads the ledger but changes nothing, so a failure halfway through one message
leaves nothing half-done, and ``supportd try`` shows the exact plan without keeping any state.
``apply_plan`` writes the plan into the (in-memory) ledger; the pipeline commits it together with
the message's "decided" state, so the decision, its ticket, its held action and its replies become
durable at the same instant. What needs no state (the rules, the guard, the language, the
customer's own words) is read first by ``supportd.decide.reading``, in this process or, for a
backlog, ahead in another; the plan is the same either way.

The order of questions:

1. Is it the same message again (another copy of a Message-ID already handled)? Then nothing.
1b. Is it from the shop's own people (the support address, the owner, the staff)? Then it is never
   a customer's: a command answering one of supportd's alerts (``supportd.act.commands``), a person's
   reply on a ticket (the ticket is answered), or nothing. No acknowledgment either way.
2. May we reply at all (``supportd.decide.guard``)? Robots, lists and bounces get nothing. An answer to
   the owner's alert from anyone else is refused (the owner is told).
3. Can its From be trusted (``supportd.intake.identity``)? If not: a plain acknowledgment at most, and
   the owner is told; nothing private, nothing held, nothing confirmed.
4. Does it answer one of our confirmation requests? Then it is read as yes / no / unclear.
5. Is it a follow-up on a ticket? Then it joins the ticket: no second acknowledgment.
6. Otherwise it is a new request: a ticket, an acknowledgment (within the per-sender caps), and
   for a clear irreversible request, a confirmation request instead of any action, offered only
   when the order source says the order is the sender's.

Every reply to a customer goes to the From address (never Reply-To: see the README, "What supportd
trusts"), the one address the order lookup, the caps and the confirmations are keyed on.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Any

from supportd.act import commands, pending, tickets
from supportd.base.clock import iso, parse_iso
from supportd.decide import explicit, guard, hours, orders, registry
from supportd.decide.reading import Reading, read_message
from supportd.decide.rules import Decision
from supportd.deliver.outbox import Answering, Letter, MailKey, Outgoing, compose, queue
from supportd.deliver.replies import first_name, reply_subject
from supportd.intake.message import Address, Inbound
from supportd.intake.msgids import read_message_id
from supportd.owner import alerts as owner
from supportd.service.context import Context
from supportd.state.ledger import Doc

ACK_KINDS = ("ack", "confirm")
THANKS_ONLY_CHARS = 120  # "Thanks, that helped!" is short; a longer reply has more to say and reopens the ticket
RESERVATION = re.compile(r"\b(but|however|still|though|except|aber|jedoch|noch|trotzdem)\b", re.IGNORECASE)
PHOTO = re.compile(r"\.(jpe?g|png|gif|heic|heif|webp|bmp|tiff?)$", re.IGNORECASE)
DELIVERED = re.compile(r"\bdelivered\b|\bzugestellt\b|\bgeliefert\b", re.IGNORECASE)


@dataclass
class Plan:
    key: str | None
    msg: Inbound
    decision: Decision
    language: str  # replies are written in it (``Reading.language``)
    skip_reason: str | None = None
    mails: list[Outgoing] = field(default_factory=list)
    new_ticket: dict[str, Any] | None = None
    join_ticket: Doc | None = None
    ticket_number: int | None = None
    new_pending: Doc | None = None
    pending_changes: dict[str, Any] | None = None
    pending_id: str | None = None
    escalations: list[tuple[str, str]] = field(default_factory=list)  # (cause, subject key)
    counts_as_ack: bool = False
    sends_notice: bool = False
    bad_token: bool = False
    reward_code: str | None = None
    outcome: str = ""
    confirmation: str | None = None  # yes / no / unclear / expired / unknown / wrong-sender / used
    faq: str | None = None  # the FAQ entry whose answer went out (alone, or added to the reply)
    faq_unhelpful: str | None = None  # a reply saying this FAQ entry's answer did not help
    keep_closed: bool = False  # a follow-up that needs no person (a thank-you for an FAQ answer)
    person_reply: tuple[int, str, str] | None = None  # (ticket, Message-ID, when): a person answered
    command: commands.CommandPlan | None = None  # the owner's command by mail
    not_held: bool = False  # a clear request the order source does not give to the sender

    @property
    def customer_reply(self) -> Outgoing | None:
        return next((m for m in self.mails if m.kind != "owner"), None)

    @property
    def held_action(self) -> dict[str, str] | None:
        if self.new_pending is None:
            return None
        return {"action": self.new_pending["action"], "confirm_to": self.new_pending["address"]}

    def summary(self) -> dict[str, Any]:
        """What ``supportd try --json`` prints and the history keeps."""
        reply = self.customer_reply
        decision = self.decision
        return {
            "primary_intent": decision.primary_intent,
            "intents": list(decision.intents),
            "explicit_request": decision.explicit_request,
            "auto_reply": reply is not None,
            "skip_reason": self.skip_reason,
            "rule": decision.rule,
            "why": decision.why,
            "reply": reply.summary() if reply else None,
            "held_action": self.held_action,
            "mentions": [{"intent": m.intent, "kind": m.kind, "words": m.words, "sentence": m.sentence}
                         for m in decision.mentions],
            "ticket": self.ticket_number,
            "confirmation": self.confirmation,
            "outcome": self.outcome,
            "faq": self.faq,
            "faq_why": _faq_why(decision) if self.faq else None,
        }


def _faq_why(decision: Decision) -> str | None:
    if decision.faq is None:
        return None
    why = f"{decision.faq.matched}: {decision.faq.why}"
    entry = decision.faq.entry
    if entry is not None and entry.name != decision.faq.matched:
        why += f" (answered with {entry.name}, in the customer's language)"
    return why


# ---------------------------------------------------------------- planning


def plan_message(ctx: Context, msg: Inbound, key: str | None, reading: Reading | None = None) -> Plan:
    """The plan for ``msg``; ``reading`` is ``read_message(ctx.reader, msg)`` when it was read ahead."""
    reading = reading or read_message(ctx.reader, msg)
    msg = reading.msg
    plan = Plan(key=key, msg=msg, decision=reading.decision, language=reading.language)
    if key is not None and _seen_before(ctx, msg, key):
        plan.skip_reason = "duplicate: a copy of this message was handled before"
        plan.outcome = "duplicate"
        return plan
    if _from_the_shop(ctx, msg):
        _plan_shop_mail(ctx, plan)
        return plan
    verdict = reading.verdict
    if not verdict.reply_allowed:
        plan.skip_reason = verdict.reason
        plan.outcome = "held back"
        return plan
    if commands.answered_owner_mail(ctx, msg) is not None:
        _plan_refused_command(ctx, plan)
        return plan
    if msg.sender_doubt:
        _plan_untrusted_sender(ctx, plan)
        return plan
    thread = tickets.find_thread(ctx, msg)
    if thread is None and plan.decision.repeat_contact and msg.sender is not None:
        earlier = tickets.latest_of(ctx, msg.sender.key)  # "third time writing!!!": the same matter again
        thread = tickets.Thread(earlier, "repeat") if earlier is not None else None
    confirm_ref = thread.our_ref if thread and thread.our_kind in pending.CONFIRM_KINDS else None
    answer = pending.find_confirmation(ctx, msg, confirm_ref)
    if answer is not None:
        _plan_confirmation(ctx, plan, answer, thread)
    elif thread is not None:
        _plan_follow_up(ctx, plan, thread)
    else:
        _plan_new_request(ctx, plan)
    return plan


def _from_the_shop(ctx: Context, msg: Inbound) -> bool:
    """From the support address, the owner or the staff, and not supportd's own mail (signed ID)."""
    if msg.sender is None or msg.sender_doubt or read_message_id(ctx.secret, msg.message_id) is not None:
        return False  # a From that cannot be trusted is nobody's, the shop's least of all
    shop = ctx.config.shop
    return msg.sender.key in shop.own_addresses or msg.sender.key in shop.people


def _plan_shop_mail(ctx: Context, plan: Plan) -> None:
    """Mail from the shop's own people: a command, a person's reply on a ticket, or nothing to do."""
    msg = plan.msg
    sender = _sender(plan)
    robot = guard.robot_signs(msg, ctx.guard_settings)
    if robot:  # an out-of-office of the owner answering our alert is no command
        plan.skip_reason = robot[0].reason
        plan.outcome = "held back"
        return
    ref = commands.answered_owner_mail(ctx, msg)
    if ref is not None and sender.key in ctx.config.shop.people:
        command = commands.plan_command(ctx, msg, ref, plan.key)
        plan.command = command
        plan.mails.extend(command.mails)
        plan.ticket_number = command.ticket
        plan.skip_reason = f"shop: a command by mail from {sender.key} (no acknowledgment)"
        plan.outcome = f"owner's command '{command.command.words}': {command.result}"
        return
    if ref is not None:
        _plan_refused_command(ctx, plan)
        return
    ticket = tickets.find_answered(ctx, msg, trust_tag=False)
    if ticket is not None:
        plan.person_reply = (ticket["number"], msg.message_id, iso(msg.written_at(ctx.now())))
        plan.ticket_number = ticket["number"]
        plan.skip_reason = f"shop: a reply by {sender.key} on ticket {ticket['number']} (no acknowledgment)"
        plan.outcome = f"ticket {ticket['number']} answered by a person"
        return
    plan.skip_reason = f"shop: mail from {sender.key}, on no ticket (no acknowledgment)"
    plan.outcome = "recorded"


def _plan_refused_command(ctx: Context, plan: Plan) -> None:
    """An answer to mail supportd sent only to the owner, from an address that is not the owner's or staff's."""
    sender = _sender(plan)
    plan.skip_reason = "shop: an answer to the owner's mail from another address (refused)"
    plan.outcome = "refused: only the owner or staff can answer supportd's alerts"
    _escalate(ctx, plan, "command-refused", None, f"{sender.key}:{ctx.local_day()}",
              f"{sender.key} answered one of supportd's mails to you (subject '{plan.msg.subject[:80]}'). "
              "Only the owner and staff addresses can give supportd commands, so nothing was done, and "
              f"the sender got no answer. What they wrote:\n\n{plan.msg.own_text[:500]}")


def _seen_before(ctx: Context, msg: Inbound, key: str) -> bool:
    """Another message in flight or in the recent history with the same fingerprint."""
    for other in ctx.ledger.find("messages", fingerprint=msg.fingerprint):
        if other["key"] != key:
            return True
    return msg.fingerprint in ctx.ledger.recent_fingerprints()


def _sender(plan: Plan) -> Address:
    assert plan.msg.sender is not None  # the guard holds back mail without one
    return plan.msg.sender


def _reply_to(msg: Inbound) -> Address:
    """Every automatic reply goes to the From address, the identity everything else is keyed on.

    Reply-To is written by whoever wrote the message and may name anyone: answering it would let
    one mail point our reply (with an order's tracking, a thank-you code) at a third party, and 500
    mails with forged From addresses all at one victim (README, "What supportd trusts").
    """
    assert msg.sender is not None
    return msg.sender


def _base_values(ctx: Context, plan: Plan, ticket: int | None, due: dt.datetime) -> dict[str, Any]:
    sender = _sender(plan)
    decision = plan.decision
    language = plan.language
    return {
        "language": language,
        "photos": [name for name in plan.msg.attachment_names if PHOTO.search(name)],
        "name": first_name(sender.name),
        "customer": sender.name or sender.email,
        "email": sender.email,
        "ticket": ticket,
        "ticket_tag": f"[#{ticket}]" if ticket else "",
        "subject": plan.msg.topic,
        "intent": decision.primary_intent,
        "eta": hours.describe_eta(due, ctx.now(), ctx.config.hours, language),
        "order_number": decision.order_number,
        "mentions": sorted({m.intent for m in decision.tentative_mentions}),
        "snippets": list(decision.snippets),
    }


def _reply(ctx: Context, plan: Plan, *, kind: str, template: str, values: dict[str, Any], ticket: int,
           to: Address, topic: str, basis: str, ref: str | None = None) -> Outgoing:
    msg = plan.msg
    return compose(
        ctx, MailKey(kind, ref or str(ticket), basis), to=to,
        letter=Letter(reply_subject(topic, ticket), template, values),
        answering=Answering.message(msg, plan.key), ticket=ticket,
    )


def _plan_new_request(ctx: Context, plan: Plan) -> None:
    decision = plan.decision
    number = tickets.peek_number(ctx)
    now = ctx.now()
    due = hours.due_time(now, ctx.config.hours)
    values = _base_values(ctx, plan, number, due)
    request = registry.perform_rule_actions(
        ctx, decision.actions, registry.Request(decision.order_number, _reply_to(plan.msg).email, values))
    order, plan.reward_code = request.order, request.reward_code
    # A lost parcel ("tracking says delivered, nothing here") is never answered by the status alone.
    checks_delivery = request.checks_delivery
    follow_up = request.opens_ticket and (order is None or checks_delivery)
    faq = decision.faq_entry
    faq_only = faq is not None and not decision.matched_rules  # the FAQ question is the whole matter
    plan.ticket_number = number
    plan.new_ticket = {"number": number, "intent": decision.primary_intent, "follow_up": follow_up,
                       "due": due, "language": values["language"]}
    if decision.held_action and decision.explicit_request:
        _plan_held_action(ctx, plan, number, values)
    only_request = decision.explicit_request == decision.primary_intent
    if not ((plan.new_pending or plan.not_held) and only_request):
        answer = {"faq_answer": faq.answer} if faq is not None else {}
        _plan_acknowledgment(ctx, plan, number, {**values, **answer},
                             _faq_template(ctx, faq.language) if faq is not None and faq_only else None)
    if faq is not None and _answer_goes_out(ctx, plan, faq.answer, values):
        plan.faq = faq.name
        if faq_only:  # answered: the ticket waits for the customer's reply, it cannot go overdue
            plan.new_ticket.update(follow_up=False, faq=faq.name)
            plan.outcome = f"answered from the FAQ ({faq.name})"
    if not any(mail.kind == "ack" for mail in plan.mails):
        plan.reward_code = None  # a code is used up only by the acknowledgment that hands it out
    _plan_escalations(ctx, plan, None)
    if checks_delivery and order is not None and DELIVERED.search(order.status or ""):
        _escalate(ctx, plan, "carrier-says-delivered", None, str(number),
                  f"The carrier says order {order.order} was delivered ({order.status}); the customer "
                  f"says it is not there:\n\n{plan.msg.own_text[:800]}")
    plan.outcome = plan.outcome or ("acknowledged" if plan.customer_reply else "recorded")


def _answer_goes_out(ctx: Context, plan: Plan, answer: str | None, values: dict[str, Any]) -> bool:
    """The acknowledgment carries the FAQ answer (an owner's template without ``faq_answer`` does not)."""
    ack = next((mail for mail in plan.mails if mail.kind == "ack"), None)
    if ack is None or not answer:
        return False
    shop = ctx.config.shop
    text = ctx.replies.render_answer(answer, {"shop": shop.name, "footer": shop.contact_footer, **values})
    return bool(text) and text in ack.text


def _faq_template(ctx: Context, language: str) -> str:
    """The FAQ reply in the answer's language (``faq_de``), or the default ``faq``."""
    localised = f"faq_{language}"
    return localised if localised in ctx.replies.names() else "faq"


def _plan_acknowledgment(ctx: Context, plan: Plan, number: int, values: dict[str, Any],
                         template: str | None = None) -> None:
    decision = plan.decision
    if registry.NoReply.NAME in decision.actions:
        plan.skip_reason = f"rule:{decision.rule} (no_reply)"
        return
    template = template or decision.reply
    if template is None:
        plan.skip_reason = f"rule:{decision.rule} (names no reply)"
        return
    recipient = _reply_to(plan.msg)
    cap = ctx.config.limits.acks_per_sender_per_day
    records = _cap_records(ctx, plan)
    acks_today = max(int(r.get("acks", 0)) for r in records)
    notice_sent = any(r.get("notice_sent") for r in records)
    if acks_today >= cap:
        _escalate(ctx, plan, "flood", None, f"{recipient.key}:{ctx.local_day()}",
                  f"More than {cap} messages today would have been answered at {recipient.key} "
                  f"(this one from {_sender(plan).key}, subject: {plan.msg.topic[:80]!r}). supportd sent "
                  "one notice and answers nothing more there today; the messages are in the mailbox.")
        if notice_sent:
            plan.skip_reason = f"cap:daily-limit ({cap} acknowledgments to {recipient.key} today)"
            return
        plan.sends_notice = True
        plan.mails.append(_reply(ctx, plan, kind="notice", template="cap_notice",
                                 values={**values, "count": acks_today + 1}, ticket=number,
                                 to=_reply_to(plan.msg), topic=plan.msg.topic,
                                 basis=plan.msg.fingerprint))
        plan.skip_reason = f"cap:daily-limit (one notice instead of an acknowledgment; {cap} sent today)"
        return
    plan.counts_as_ack = True
    plan.mails.append(_reply(ctx, plan, kind="ack", template=template, values=values, ticket=number,
                             to=_reply_to(plan.msg), topic=plan.msg.topic, basis=plan.msg.fingerprint))


def _cap_records(ctx: Context, plan: Plan) -> list[Doc]:
    """Today's counts for the sender and for the recipient of the reply (the same address unless
    a reply goes elsewhere): a cap counts both, so neither many senders nor many mails get past it."""
    today = ctx.local_day()
    records = []
    for address in _counted_addresses(plan):
        record = ctx.ledger.get("senders", address=address) or {}
        records.append(record if record.get("day") == today else {})
    return records


def _counted_addresses(plan: Plan) -> list[str]:
    sender = _sender(plan).key
    recipient = _reply_to(plan.msg).key
    return [sender] if recipient == sender else [sender, recipient]


def _plan_untrusted_sender(ctx: Context, plan: Plan) -> None:
    """A From that parses to several addresses, or that parsers read differently: trusted for nothing
    but a plain acknowledgment, and that only where the envelope sender (Return-Path) is the same
    address (RFC 3834 section 4). No order data, no code, nothing held or confirmed; the owner sees it."""
    msg = plan.msg
    sender = _sender(plan)
    number = tickets.peek_number(ctx)
    due = hours.due_time(ctx.now(), ctx.config.hours)
    fallback = ctx.rules.fallback
    plan.ticket_number = number
    plan.new_ticket = {"number": number, "intent": plan.decision.primary_intent, "follow_up": True, "due": due}
    envelope_agrees = (msg.return_path or "").lower() == sender.key
    if envelope_agrees and fallback.reply:
        values = {**_base_values(ctx, plan, number, due), "order_number": None, "snippets": [], "mentions": []}
        plan.decision = replace(plan.decision, reply=fallback.reply, actions=("open_ticket",))
        _plan_acknowledgment(ctx, plan, number, values)
    else:
        plan.skip_reason = f"sender:untrusted-from ({msg.sender_doubt}; no envelope sender to match)"
    _escalate(ctx, plan, "untrusted-from", None, msg.fingerprint,
              f"The From header of this message cannot be trusted: {msg.sender_doubt}.\n"
              f"From as written: {msg.header('from')[:300]!r}\nReturn-Path: {msg.return_path or '(none)'}\n"
              "supportd sent no order data and held nothing"
              + (f"; a plain acknowledgment went to {sender.key}." if plan.customer_reply else
                 "; nobody was answered.") + "\n\n" + msg.own_text[:500])
    plan.outcome = plan.outcome or (
        "acknowledged (untrusted From)" if plan.customer_reply else "recorded (untrusted From)")


def _order_bound(ctx: Context, decision: Decision) -> bool:
    """A held change about an order (not the sender's own subscription), checkable with the order source."""
    on_order = registry.confirm_action(decision.held_action or "").ON_ORDER
    if not orders.has_source(ctx.config.orders) or on_order is False:
        return False
    return on_order is True or bool(decision.order_number)


def _plan_not_held(ctx: Context, plan: Plan, number: int, values: dict[str, Any],
                   ownership: orders.Ownership) -> None:
    """The order source does not say the order is the sender's: nothing held, a kind answer, the owner told."""
    sender = _sender(plan)
    decision = plan.decision
    plan.not_held = True
    if plan.new_ticket is not None:
        plan.new_ticket["follow_up"] = True  # a person looks at it
    plan.counts_as_ack = True
    plan.mails.append(_reply(ctx, plan, kind="ack", template="action_not_held",
                             values={**values, "order_number": ownership.order or decision.order_number},
                             ticket=number, to=sender, topic=plan.msg.topic, basis=plan.msg.fingerprint))
    if ownership.order and ownership.owner:
        known = f"the order source says order {ownership.order} belongs to another address ({ownership.owner})"
    elif ownership.order:
        known = f"the order source does not know order {ownership.order} or whose it is"
    else:
        known = "no order number was given and the order source knows no order for this address"
    _escalate(ctx, plan, "not-owner", None, plan.msg.fingerprint,
              f"{sender.key} asked for '{decision.held_action}' but {known}. Nothing was held; "
              f"they were told a person will look at it.\n\n{plan.msg.own_text[:500]}")
    plan.outcome = f"held nothing: {known}"


def _plan_held_action(ctx: Context, plan: Plan, number: int, values: dict[str, Any]) -> None:
    """A clear irreversible request: hold it, and ask the From address (never Reply-To) to confirm.

    A change to an order is held only when the order source says the order is the sender's; the
    held action names the order (the sender's latest, when they gave no number).
    """
    decision = plan.decision
    sender = _sender(plan)
    assert decision.held_action is not None
    order_number = decision.order_number
    if _order_bound(ctx, decision):
        ownership = orders.owner_of(ctx.config.orders, decision.order_number, sender.email)
        if not ownership.belongs_to(sender.email):
            _plan_not_held(ctx, plan, number, values, ownership)
            return
        order_number = ownership.order
        values = {**values, "order_number": order_number}
    params = {"order_number": order_number} if order_number else {}
    params["email"] = sender.email
    pending_id = pending.new_pending_id(ctx, number)
    token = pending.new_token()
    only_request = decision.explicit_request == decision.primary_intent
    joined = plan.join_ticket
    closes_ticket = only_request and (joined is None or joined["intent"] == decision.explicit_request)
    doc = pending.make_pending(ctx, pending_id=pending_id, action=decision.held_action, params=params,
                               address=sender.email, ticket=number, token=token, closes_ticket=closes_ticket)
    plan.new_pending = doc
    plan.pending_id = pending_id
    if only_request and plan.new_ticket is not None:
        # Nothing is promised yet: the ticket waits for the customer, not for us (no overdue alarm).
        plan.new_ticket["follow_up"] = False
        plan.new_ticket["waiting"] = True
    description = pending.describe(decision.held_action, params)
    expires = hours.describe_eta(dt.datetime.fromisoformat(doc["expires"]), ctx.now(), ctx.config.hours,
                                 values["language"])
    confirm_values = {**values, "action": description, "expires": expires, "token": token,
                      "intent": decision.explicit_request, "undo": pending.undo_text(ctx, decision.held_action)}
    mail = compose(
        ctx, MailKey("confirm", pending_id, plan.msg.fingerprint), to=sender,
        letter=Letter(reply_subject(plan.msg.topic, number, f"[confirm: {token}]"), "confirm", confirm_values),
        answering=Answering.message(plan.msg, plan.key), ticket=number,
    )
    plan.mails.append(mail)
    plan.counts_as_ack = True
    plan.outcome = f"held {decision.held_action}, asked {sender.email} to confirm"


def _plan_follow_up(ctx: Context, plan: Plan, thread: tickets.Thread) -> None:
    ticket = thread.ticket
    plan.join_ticket = ticket
    plan.ticket_number = ticket["number"]
    plan.skip_reason = f"follow-up: joins ticket {ticket['number']} (no second acknowledgment)"
    decision = plan.decision
    if decision.held_action and decision.explicit_request:
        due = hours.due_time(ctx.now(), ctx.config.hours)
        values = _base_values(ctx, plan, ticket["number"], due)
        _plan_held_action(ctx, plan, ticket["number"], values)
        plan.skip_reason = None
    if ticket.get("faq"):
        _plan_faq_reply(ctx, plan, ticket)
    _plan_escalations(ctx, plan, ticket)
    plan.outcome = plan.outcome or (
        f"noted a thank-you on ticket {ticket['number']}" if plan.keep_closed
        else f"reopened ticket {ticket['number']}" if ticket["state"] != tickets.OPEN
        else f"joined ticket {ticket['number']}"
    )


def _plan_faq_reply(ctx: Context, plan: Plan, ticket: Doc) -> None:
    """The customer answers our FAQ answer: "that did not help" goes to a person at once (an alert),
    a short thank-you ("thanks, that helped") leaves the ticket closed; anything else reopens it."""
    text = plan.msg.own_text
    language = ctx.rules.language
    if language.not_helped.search(text):
        plan.faq_unhelpful = str(ticket["faq"])
        _escalate(ctx, plan, "faq-unhelpful", ticket, str(ticket["number"]),
                  f"The customer says the FAQ answer '{ticket['faq']}' did not help:\n\n{text[:800]}")
    elif ticket["state"] != tickets.OPEN and not plan.new_pending and _only_thanks(plan, language.helped):
        plan.keep_closed = True
        plan.skip_reason = f"follow-up: a thank-you for the FAQ answer (ticket {ticket['number']} stays closed)"


def _only_thanks(plan: Plan, thanks: re.Pattern[str]) -> bool:
    """A short thank-you and nothing more: no question, no "but", no other matter a rule sees."""
    text = plan.msg.own_text
    return (len(text) <= THANKS_ONLY_CHARS and "?" not in text and not plan.decision.matched_rules
            and not RESERVATION.search(text) and plan.decision.faq is None
            and thanks.search(text) is not None)


def _plan_confirmation(ctx: Context, plan: Plan, answer: pending.ConfirmationReply,
                       thread: tickets.Thread | None) -> None:
    """A reply to one of our confirmation requests: only its sender's own, clear "yes" confirms."""
    sender = _sender(plan)
    held = answer.pending
    if held is None:
        _plan_bad_token(ctx, plan, None, "unknown")
        return
    plan.pending_id = held["id"]
    plan.ticket_number = held["ticket"]
    ticket = tickets.lookup(ctx, held["ticket"])
    if sender.key != held["address"]:
        plan.confirmation = "wrong-sender"
        plan.skip_reason = "confirmation: from another address than the request (refused)"
        plan.outcome = "refused a confirmation from the wrong address"
        _escalate(ctx, plan, "wrong-sender", ticket, held["id"],
                  f"{sender.key} answered the confirmation request for '{held['action']}' sent to "
                  f"{held['address']}. Nothing was done.")
        return
    if held["state"] == pending.DROPPED or pending.is_expired(ctx, held):
        plan.pending_changes = {"state": pending.EXPIRED} if held["state"] == pending.WAITING else None
        _plan_bad_token(ctx, plan, held, "expired")
        return
    answer_word = explicit.confirmation_answer(plan.msg.own_text, ctx.rules.language, _restates(ctx, plan, held))
    stoppable = held["state"] == pending.CONFIRMED and answer_word == explicit.NO  # a retry still waits
    if held["state"] != pending.WAITING and not stoppable:
        _plan_late_answer(plan, held, ticket, answer_word)
        return
    plan.confirmation = answer_word
    due = hours.due_time(ctx.now(), ctx.config.hours)
    values = {**_base_values(ctx, plan, held["ticket"], due),
              "action": pending.describe(held["action"], held["params"])}
    topic = ticket["subject"] if ticket else plan.msg.topic
    if answer_word == explicit.YES:
        plan.pending_changes = {"state": pending.CONFIRMED, "confirmed": iso(ctx.now())}
        plan.skip_reason = "confirmation: yes (the action runs now; the customer hears when it is done)"
        plan.outcome = f"confirmed {held['action']}"
    elif answer_word == explicit.NO:
        plan.pending_changes = {"state": pending.REFUSED}
        plan.mails.append(_reply(ctx, plan, kind="kept", template="action_kept", values=values,
                                 ticket=held["ticket"], to=sender, topic=topic,
                                 basis=f"{plan.msg.fingerprint}:kept"))
        plan.outcome = f"kept everything as it is ({held['action']} refused)"
        _escalate(ctx, plan, "confirmation-refused", ticket, held["id"],
                  f"The customer said no to '{values['action']}'. Nothing was changed.")
    else:
        _plan_unclear_answer(ctx, plan, held, ticket, values, topic)


def _restates(ctx: Context, plan: Plan, held: Doc) -> bool:
    """The reply itself clearly asks for the held change ("Please cancel it"), and for no other order."""
    if plan.decision.held_action != held["action"]:
        return False
    numbers = {n.upper() for n in ctx.rules.language.order_number.findall(plan.msg.own_text)}
    return numbers <= {str(held["params"].get("order_number", "")).upper()}


def _plan_unclear_answer(ctx: Context, plan: Plan, held: Doc, ticket: Doc | None, values: dict[str, Any],
                         topic: str) -> None:
    """One clarifying question (its replies count as answers too); the owner sees every such answer."""
    plan.join_ticket = ticket  # the clarifying reply promises a person: the ticket is due again
    if not held.get("clarified"):
        plan.pending_changes = {"clarified": True}
        plan.mails.append(_reply(ctx, plan, kind="clarify", template="confirm_unclear", values=values,
                                 ticket=held["ticket"], to=_sender(plan), topic=topic,
                                 basis=f"{plan.msg.fingerprint}:unclear", ref=held["id"]))
        plan.outcome = "asked once more (the answer was unclear)"
    else:
        plan.skip_reason = "confirmation: unclear again (one clarifying reply was sent already)"
        plan.outcome = "left the unclear answer to the owner"
    _escalate(ctx, plan, "confirmation-unclear", ticket, held["id"],
              f"The customer's answer to '{values['action']}' could be read either way:\n\n"
              f"{plan.msg.own_text[:500]}")


def _plan_late_answer(plan: Plan, held: Doc, ticket: Doc | None, answer_word: str) -> None:
    """An answer to a confirmation already answered: a repeated yes (or no) changes nothing.

    Anything else (a question, a "no, wait" once it is done) joins the ticket for a person.
    """
    plan.confirmation = "used"
    plan.skip_reason = f"confirmation: already answered ({held['state']})"
    plan.outcome = "ignored a repeated answer"
    repeated = answer_word == explicit.YES or (answer_word == explicit.NO and held["state"] == pending.REFUSED)
    if not repeated and ticket is not None:
        plan.join_ticket = ticket
        plan.outcome = f"joined ticket {ticket['number']} (a message after the confirmation was answered)"


def _plan_bad_token(ctx: Context, plan: Plan, held: Doc | None, why: str) -> None:
    """An unknown, expired, used-up or withdrawn code: nothing changes, and we say so kindly, a few times a day."""
    sender = _sender(plan)
    plan.confirmation = why
    plan.bad_token = True
    record = ctx.ledger.get("senders", address=sender.key) or {}
    bad_today = int(record.get("bad_tokens", 0)) if record.get("day") == ctx.local_day() else 0
    if bad_today >= ctx.config.limits.bad_tokens_per_sender_per_day:
        plan.skip_reason = "confirmation: too many unknown or expired codes from this sender today (rate-limited)"
        plan.outcome = "ignored (rate-limited)"
        _escalate(ctx, plan, "bad-tokens", None, f"{sender.key}:{ctx.local_day()}",
                  f"{sender.key} sent {bad_today + 1} unknown or expired confirmation codes today.")
        return
    due = hours.due_time(ctx.now(), ctx.config.hours)
    values = _base_values(ctx, plan, held["ticket"] if held else None, due)
    ticket = tickets.lookup(ctx, held["ticket"]) if held else None
    if held is not None:
        values["action"] = pending.describe(held["action"], held["params"])
    topic = ticket["subject"] if ticket else plan.msg.topic
    ref = str(held["ticket"]) if held else f"u{tickets.peek_number(ctx)}"  # a reply to it joins the ticket
    plan.mails.append(compose(
        ctx, MailKey("expired", ref, f"{plan.msg.fingerprint}:{why}"), to=sender,
        letter=Letter(reply_subject(topic, held["ticket"] if held else None), "confirm_expired", values),
        answering=Answering.message(plan.msg, plan.key), ticket=held["ticket"] if held else None,
    ))
    plan.outcome = ("told the customer the confirmation had expired" if held
                    else "told the customer the confirmation code is unknown or expired")


def _plan_escalations(ctx: Context, plan: Plan, ticket: Doc | None) -> None:
    """Upset, writing again, a rule's ``escalate``: one alert for the message, naming every new cause."""
    decision = plan.decision
    subject = str(ticket["number"]) if ticket else str(plan.ticket_number)
    reasons = []
    if decision.angry:
        reasons.append(("angry", "The customer sounds upset."))
    if decision.repeat_contact:
        reasons.append(("repeat", "The customer says they have written before."))
    if registry.Escalate.NAME in decision.actions:
        reasons.append(("rule", f"Rule '{decision.rule}' asks for you."))
    new = [(cause, why) for cause, why in reasons if not owner.already_escalated(ctx, cause, subject)]
    if new:
        details = " ".join(why for _, why in new) + f"\n\n{plan.msg.own_text[:800]}"
        _escalate(ctx, plan, new[0][0], ticket, subject, details, also=[cause for cause, _ in new[1:]])


def _escalate(ctx: Context, plan: Plan, cause: str, ticket: Doc | None, subject_key: str, details: str,
              also: list[str] | None = None) -> None:
    if any(c == cause and k == subject_key for c, k in plan.escalations):
        return
    sender = _sender(plan)
    shown_ticket = ticket or (
        {"number": plan.ticket_number, "subject": plan.msg.topic} if plan.ticket_number else None
    )
    mail = owner.escalation(ctx, cause=cause, subject_key=subject_key, details=details,
                            ticket=shown_ticket, customer=sender.email, customer_name=sender.name, also=also or [])
    if mail is not None:
        plan.mails.append(mail)
        plan.escalations.extend((c, subject_key) for c in [cause, *(also or [])])


# ---------------------------------------------------------------- applying


def apply_plan(ctx: Context, plan: Plan) -> None:
    """Write the plan into the ledger (durable with the pipeline's next commit)."""
    msg = plan.msg
    if plan.new_ticket is not None:
        tickets.new_ticket(ctx, number=plan.new_ticket["number"], msg=msg, intent=plan.new_ticket["intent"],
                           follow_up=plan.new_ticket["follow_up"], due=plan.new_ticket["due"],
                           faq=plan.new_ticket.get("faq"), language=plan.new_ticket.get("language", ""),
                           waiting=bool(plan.new_ticket.get("waiting")))
    if plan.join_ticket is not None:
        tickets.join(ctx, plan.join_ticket, msg, hours.due_time(ctx.now(), ctx.config.hours),
                     reopen=not plan.keep_closed)
    if plan.person_reply is not None:
        number, message_id, when = plan.person_reply
        answered = tickets.lookup(ctx, number)
        if answered is not None:
            tickets.person_replied(ctx, answered, message_id, parse_iso(when))
    if plan.command is not None:
        commands.apply_command(ctx, plan.command)
    if plan.new_pending is not None:
        ctx.ledger.put("pending", "id", plan.new_pending)
    if plan.pending_changes and plan.pending_id:
        ctx.ledger.patch("pending", "id", plan.pending_id, **plan.pending_changes)
        state = plan.pending_changes.get("state")
        if state in (pending.REFUSED, pending.EXPIRED):
            ctx.ledger.record("pending", plan.pending_id, outcome=state, ticket=plan.ticket_number)
    alert_id = next((m.message_id for m in plan.mails if m.kind == "owner"), "")
    for cause, subject_key in plan.escalations:
        owner.mark_escalated(ctx, cause, subject_key, mail=alert_id)
        ticket = tickets.lookup(ctx, plan.ticket_number) if plan.ticket_number else None
        if ticket is not None:
            tickets.mark_escalated(ctx, ticket, cause)
    if plan.reward_code:
        ctx.ledger.set_meta("reward_codes_used", [*ctx.ledger.meta("reward_codes_used", []), plan.reward_code])
    _count_sender(ctx, plan)
    for mail in plan.mails:
        queue(ctx, mail)


def _count_sender(ctx: Context, plan: Plan) -> None:
    if not (plan.counts_as_ack or plan.sends_notice or plan.bad_token) or plan.msg.sender is None:
        return
    for address in _counted_addresses(plan):
        _count_address(ctx, plan, address)


def _count_address(ctx: Context, plan: Plan, address: str) -> None:
    day = ctx.local_day()
    record = ctx.ledger.get("senders", address=address) or {}
    if record.get("day") != day:
        record = {"address": address, "day": day, "acks": 0, "notice_sent": False, "bad_tokens": 0}
    if plan.counts_as_ack:
        record["acks"] = int(record["acks"]) + 1
    if plan.sends_notice:
        record["notice_sent"] = True
    if plan.bad_token:
        record["bad_tokens"] = int(record.get("bad_tokens", 0)) + 1
    ctx.ledger.put("senders", "address", record)

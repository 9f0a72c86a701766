"""``supportd demo``: the real daemon against local mail servers, with sample customers.

Starts a throw-away Dovecot (installing Debian's dovecot-imapd when missing) and an SMTP server on
127.0.0.1, writes a config for an example shop, starts ``supportd run`` as a separate process,
and drops sample customer emails into the support mailbox one at a time. For each it shows what
supportd decided and the reply the customer received, then plays one confirmation round trip.
Everything lives in one temporary folder, removed at the end unless ``--keep``.
"""

from __future__ import annotations

import email.policy
import email.utils
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from supportd_testing.localmail import (
    LOCAL_OWNER,
    LOCAL_SUPPORT,
    Dovecot,
    MailUser,
    SmtpSink,
    ensure_dovecot,
    write_supportd_config,
)

SUPPORT = LOCAL_SUPPORT
OWNER = LOCAL_OWNER
WAIT_SECONDS = 10.0
ORDERS_CSV = """order,email,status,tracking,carrier,tracking_url
77120,ada@example.org,shipped on Friday and due tomorrow,00340434161234567890,DHL,https://www.dhl.de/track?n=00340434161234567890
77122,chloe@example.org,being packed,,,
"""
HOOK = """import json, sys, pathlib
action = json.load(sys.stdin)
log = pathlib.Path(__file__).with_name("shop-actions.log")
done = log.read_text().splitlines() if log.exists() else []
if action["idempotency_key"] not in done:          # a hook must be idempotent
    log.write_text("\\n".join(done + [action["idempotency_key"]]) + "\\n")
print("order", action["params"].get("order_number"), "cancelled in the shop")
"""


@dataclass(frozen=True)
class Sample:
    who: str
    sender: str
    subject: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()
    expect_reply: bool = True
    note: str = ""


SAMPLES = (
    Sample("Ada asks where her order is", "Ada Lovelace <ada@example.org>", "Where is my order?",
           "Hi! I ordered a teapot last week (order 77120) and it hasn't arrived yet.\n"
           "Could you tell me where it is?\n\nThanks,\nAda"),
    Sample("Ben's mug arrived broken, and he muses about the newsletter", "Ben Okafor <ben@example.org>",
           "Mug arrived broken",
           "Hello, the mug from order 77121 arrived with a crack in the handle.\n"
           "Honestly, I'm thinking of unsubscribing from your newsletter too, you send a lot.\n\nBen",
           note="the defect is the problem to solve; the musing is not a request"),
    Sample("Chloe asks, clearly, to cancel", "Chloe Martin <chloe@example.org>", "Cancel my order",
           "Please cancel my order 77122. I found it cheaper elsewhere, sorry!\n\nChloe",
           note="irreversible: held until Chloe confirms"),
    Sample("Dan only asks about the process", "Dan Ito <dan@example.org>", "Cancellation question",
           "What happens if I cancel my subscription? Is there a fee?\n\nDan",
           note="a question is not a request: nothing is held"),
    Sample("Fay asks which payment methods the shop takes", "Fay Nguyen <fay@example.org>", "Paying",
           "Hello, which payment methods do you accept? Can I pay with PayPal?\n\nFay",
           note="answered at once from the FAQ (the demo wrote the answer of rules/63-faq-payment.yaml)"),
    Sample("An out-of-office robot", "Eve Example <eve@example.org>", "Automatic reply: Your order",
           "I am out of the office until Monday.", (("Auto-Submitted", "auto-replied"),), expect_reply=False),
    Sample("A mailing list", "Vendor News <news@vendor.example>", "Our November offers",
           "Big savings this week!", (("List-Id", "<offers.vendor.example>"), ("Precedence", "bulk")),
           expect_reply=False),
)


def build_mail(sample: Sample, in_reply_to: str = "") -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sample.sender
    msg["To"] = f"Example Shop <{SUPPORT}>"
    msg["Subject"] = sample.subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in sample.headers:
        msg[name] = value
    msg.set_content(sample.body)
    return msg.as_bytes()


PAYMENT_ANSWER = """We accept PayPal, Visa, Mastercard and bank transfer; you choose at checkout.
      PayPal and cards are charged when your order ships."""


def write_rules(folder: Path) -> Path:
    """The default rules, with the one FAQ answer the demo shows written in (the defaults have none)."""
    from supportd.base.config import repository_defaults

    rules = folder / "rules"
    shutil.copytree(repository_defaults()[0], rules)
    payment = rules / "63-faq-payment.yaml"
    text = payment.read_text(encoding="utf-8")
    payment.write_text(text.replace("    answer:\n", f"    answer: |\n      {PAYMENT_ANSWER}\n", 1), encoding="utf-8")
    return rules


def write_config(folder: Path, dovecot: Dovecot, sink: SmtpSink, user: MailUser) -> Path:
    (folder / "orders.csv").write_text(ORDERS_CSV)
    (folder / "cancel-order-hook.py").write_text(HOOK)
    return write_supportd_config(folder, dovecot, sink, user, {
        "shop": {"contact_footer": "Example Shop · 12 Market Street, Berlin · +49 30 1234567"},
        "hours": {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"],
                  "open": "09:00", "close": "17:00", "answer_within_hours": 4},
        "orders": {"csv": "orders.csv"},
        "actions": {"cancel_order": {"command": [sys.executable, str(folder / "cancel-order-hook.py")]}},
        "paths": {"rules": str(write_rules(folder))},
    })


class Demo:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.user = MailUser(SUPPORT, "demo-password")
        self.dovecot = Dovecot(folder / "imap", users=[self.user])
        self.sink = SmtpSink()
        self.daemon: subprocess.Popen[bytes] | None = None
        self.config = folder / "supportd.yaml"

    def start(self) -> None:
        self.dovecot.start()
        self.sink.start()
        self.config = write_config(self.folder, self.dovecot, self.sink, self.user)
        log = (self.folder / "supportd.log").open("wb")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "supportd", "run", "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._wait_for_log("supportd running")

    def stop(self) -> None:
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        self.sink.stop()
        self.dovecot.stop()

    def _wait_for_log(self, text: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        log = self.folder / "supportd.log"
        while time.monotonic() < deadline:
            if log.exists() and text in log.read_text(errors="replace"):
                return
            if self.daemon and self.daemon.poll() is not None:
                raise RuntimeError(f"supportd stopped:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        raise RuntimeError(f"supportd did not log '{text}' within {WAIT_SECONDS:.0f} s")

    def decisions(self) -> dict[str, dict[str, object]]:
        found: dict[str, dict[str, object]] = {}
        for path in sorted((self.folder / "state" / "history").glob("*.jsonl")):
            for line in path.read_text().splitlines():
                record = json.loads(line) if line.strip() else {}
                if record.get("type") == "message":
                    found[str(record["id"])] = record
        return found

    def send(self, raw: bytes, expect_reply: bool) -> tuple[dict[str, object], list[EmailMessage], float]:
        before_mail, before_decisions = len(self.sink.messages), set(self.decisions())
        started = time.monotonic()
        self.dovecot.append(self.user, raw)
        deadline = started + WAIT_SECONDS
        while time.monotonic() < deadline:
            fresh = [k for k in self.decisions() if k not in before_decisions]
            if fresh and (not expect_reply or len(self.sink.messages) > before_mail):
                break
            time.sleep(0.02)
        replies = [m.message() for m in self.sink.messages[before_mail:]]
        elapsed = (self.sink.messages[before_mail].at_monotonic - started) if replies else 0.0
        decision = next((v for k, v in self.decisions().items() if k not in before_decisions), {})
        return decision, replies, elapsed


def show(number: int, title: str, decision: dict[str, object], replies: list[EmailMessage], elapsed: float,
         note: str) -> None:
    print(f"\n{number}. {title}")
    intent = decision.get("primary_intent", "?")
    print(f"   supportd: intent {intent}, rule {decision.get('rule', '?')}; {decision.get('outcome', '')}")
    if decision.get("faq"):
        print(f"   FAQ answer sent: {decision['faq']}")
    if decision.get("tentative"):
        print(f"   side remark recorded (not acted on): {', '.join(map(str, decision['tentative']))}")  # type: ignore[call-overload]
    if note:
        print(f"   ({note})")
    if not replies:
        print(f"   no reply: {decision.get('skip_reason')}")
    for reply in replies:
        who = "the owner" if OWNER in str(reply["To"]) else str(reply["To"])
        print(f"   -> to {who}, {elapsed:.2f} s after it arrived: {reply['Subject']}")
        body = reply.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        print(textwrap.indent(text.strip(), "      | ", lambda line: True))


def run_demo(keep: bool = False) -> int:
    ensure_dovecot()
    folder = Path(tempfile.mkdtemp(prefix="sd-demo-", dir="/tmp"))
    folder.chmod(0o755)
    demo = Demo(folder)
    print("supportd demo: a local Dovecot and SMTP server, an example shop, sample customers.")
    print(f"(everything in {folder}; supportd's own log: {folder / 'supportd.log'})")
    try:
        demo.start()
        confirmation: EmailMessage | None = None
        for number, sample in enumerate(SAMPLES, 1):
            decision, replies, elapsed = demo.send(build_mail(sample), sample.expect_reply)
            show(number, sample.who, decision, replies, elapsed, sample.note)
            confirmation = next((r for r in replies if "[confirm:" in str(r["Subject"])), confirmation)
        if confirmation is not None:
            answer = Sample("Chloe answers the confirmation: 'Yes, please cancel it.'",
                            "Chloe Martin <chloe@example.org>", f"Re: {confirmation['Subject']}",
                            "Yes, please cancel it.\n\n> you asked us to cancel order 77122.")
            decision, replies, elapsed = demo.send(build_mail(answer, str(confirmation["Message-ID"])), True)
            show(len(SAMPLES) + 1, answer.who, decision, replies, elapsed,
                 "her own words say yes, from the same address: the shop's hook runs once")
            actions = (folder / "shop-actions.log")
            print(f"   shop hook ran for: {actions.read_text().split() if actions.exists() else 'nothing'}")
        print("\nOpen tickets now (supportd tickets):")
        subprocess.run([sys.executable, "-m", "supportd", "tickets", "--config", str(demo.config)], check=False)
        return 0
    finally:
        demo.stop()
        if keep:
            print(f"\nkept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

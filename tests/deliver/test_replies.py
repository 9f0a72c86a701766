"""What customers receive: the shop's templates, safely rendered, within the caps, with reward codes."""

from __future__ import annotations

import email.policy
import shutil
from email.message import EmailMessage
from pathlib import Path

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import SandboxedEnvironment

from supportd.base.clock import FakeClock
from supportd.deliver.replies import OUTGOING_POLICY, Replies, sample_context
from supportd.service import cli

from conftest import REPO, World, mail
from planning import TUESDAY_MORNING

CUSTOMER = "ada@example.org"


def own_replies(world: World, tmp: Path) -> Path:
    """A copy of the default replies the test may change; the world's config points at it."""
    folder = tmp / "replies"
    shutil.copytree(REPO / "replies", folder)
    world.replies_dir = folder
    world.write_config()
    return folder


def body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# ---------------------------------------------------------------- customer text is only ever data


def test_template_code_in_a_subject_is_printed_as_it_is(world: World, short_tmp: Path) -> None:
    """A subject like '{{ config }}' or a huge loop appears literally, never evaluated."""
    folder = own_replies(world, short_tmp)
    edit(folder / "other.txt", "thank you for writing to {{ shop }}.", "thank you for writing about: {{ subject }}")
    subject = "{{ config }} {% for x in range(999999) %}x{% endfor %}"
    world.deliver(mail("Hello, I have a question about gift wrapping.", subject=subject))
    world.once()
    [reply] = world.sent_to(CUSTOMER)
    assert subject in reply["Subject"]
    text = body(reply)
    assert f"thank you for writing about: {subject}" in text
    assert "xxxx" not in text and "Config(" not in text


def test_owner_template_cannot_reach_python_internals(tmp_path: Path) -> None:
    """Templates run in Jinja2's sandbox: a template that digs into Python objects fails to render."""
    (tmp_path / "probe.txt").write_text("{{ email.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises((jinja2.exceptions.SecurityError, jinja2.exceptions.UndefinedError)):
        Replies(tmp_path).render("probe", {"email": "ada@example.org"})


def test_line_breaks_in_subject_and_name_never_add_a_header(world: World) -> None:
    """CR/LF hidden in an encoded subject or display name ends up as text, not as a new header."""
    raw = (b"From: =?utf-8?q?Ada=0D=0ABcc=3A_evil=40attacker=2Eexample?= <ada@example.org>\r\n"
           b"To: support@shop.example\r\n"
           b"Subject: =?utf-8?q?Where_is_my_order=3F=0D=0AX-Injected=3A_yes=0D=0A=0D=0Afake_body?=\r\n"
           b"Message-ID: <crlf@example.org>\r\n"
           b"Date: Tue, 24 Nov 2026 09:00:00 +0000\r\n\r\n"
           b"Hello, where is my order 77120?\r\n")
    world.deliver(raw)
    world.once()
    [received] = [m for m in world.sink.messages if CUSTOMER in m.rcpt_tos]
    assert received.rcpt_tos == [CUSTOMER]
    reply = received.message()
    assert reply["X-Injected"] is None and reply["Bcc"] is None
    assert [a.addr_spec for a in reply["To"].addresses] == [CUSTOMER]
    assert "X-Injected: yes" in reply["Subject"]  # kept as words of the subject
    header_names = [line.split(b":", 1)[0].lower() for line in received.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                    if line and not line[:1].isspace()]
    assert b"x-injected" not in header_names and b"bcc" not in header_names


# ---------------------------------------------------------------- HTML alternative


def test_html_alternative_is_sent_when_the_shop_writes_one(world: World, short_tmp: Path) -> None:
    """With other.html beside other.txt, the reply has an HTML part, customer text escaped in it."""
    folder = own_replies(world, short_tmp)
    (folder / "other.html").write_text("<p>Hello {{ name }}, thank you for writing about {{ subject }}.</p>\n"
                                       "<p>{{ footer }}</p>\n", encoding="utf-8")
    world.deliver(mail("A question about gift wrapping.", subject="<script>alert(1)</script> & wrapping"))
    world.once()
    [reply] = world.sent_to(CUSTOMER)
    html = reply.get_body(preferencelist=("html",))
    assert html is not None and html.get_content_type() == "text/html"
    content = html.get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; wrapping" in content
    assert "<script>" not in content
    assert "Example Shop · +49 30 1234567" in content
    assert "thank you for writing" in body(reply)


def test_plain_text_only_without_an_html_template(world: World) -> None:
    """Without NAME.html the reply is one plain-text part."""
    world.deliver(mail("A question about gift wrapping.", subject="Gift wrapping"))
    world.once()
    [reply] = world.sent_to(CUSTOMER)
    assert reply.get_content_type() == "text/plain"


# ---------------------------------------------------------------- supportd check lints the shop's voice


def run_check(world: World, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["check", "--config", str(world.config_path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_default_replies_pass_the_check(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped replies have a footer everywhere, thank for defects and avoid the phrases."""
    world.write_config()
    code, output = run_check(world, capsys)
    assert code == 0, output


def test_check_names_a_phrase_to_avoid_with_its_line(world: World, short_tmp: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """'Yes, but' in a reply is reported as replies/FILE.txt:LINE, and the check fails."""
    folder = own_replies(world, short_tmp)
    lines = (folder / "other.txt").read_text(encoding="utf-8").splitlines()
    lines.insert(3, "Yes, but I don't know when.")
    (folder / "other.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, output = run_check(world, capsys)
    assert code == 2
    assert "replies/other.txt:4: avoid 'yes, but'" in output
    assert "replies/other.txt:4: avoid 'i don't know'" in output


def test_check_reports_a_reply_without_the_contact_footer(world: World, short_tmp: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A customer reply that drops {{ footer }} is reported: the customer must reach a person."""
    folder = own_replies(world, short_tmp)
    edit(folder / "unsubscribe.txt", "{{ footer }}", "Example Shop")
    code, output = run_check(world, capsys)
    assert code == 2
    assert "replies/unsubscribe.txt:1: no contact footer" in output


def test_check_reports_a_defect_reply_without_thanks(world: World, short_tmp: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The defect reply must thank the customer for telling us."""
    folder = own_replies(world, short_tmp)
    (folder / "defect.txt").write_text("Hello,\n\nwe will look at it by {{ eta }}.\n\n-- \n{{ footer }}\n",
                                       encoding="utf-8")
    code, output = run_check(world, capsys)
    assert code == 2
    assert "replies/defect.txt:1: a defect reply should thank the customer" in output


# ---------------------------------------------------------------- headers every reply carries


def test_acknowledgment_says_it_is_automatic(world: World) -> None:
    """Replies carry Auto-Submitted: auto-replied and X-Auto-Response-Suppress: All (RFC 3834)."""
    world.deliver(mail())
    world.once()
    [reply] = world.sent_to(CUSTOMER)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["X-Auto-Response-Suppress"] == "All"


# ---------------------------------------------------------------- per-sender caps


def separate_questions(world: World, count: int, sender: str = f"Ada Lovelace <{CUSTOMER}>") -> None:
    for n in range(count):
        world.deliver(mail(f"Question number {n}: do you gift-wrap item {n}?", sender=sender,
                           subject=f"Question {n}"))


def test_ten_acknowledgments_a_day_then_one_notice_then_quiet(world: World) -> None:
    """An eager sender (or a robot in disguise) gets 10 acknowledgments, one notice, then nothing."""
    clock = FakeClock(TUESDAY_MORNING)
    separate_questions(world, 13)
    report = world.once(clock)
    replies = world.sent_to(CUSTOMER)
    assert len(replies) == 11
    assert all(r["Auto-Submitted"] == "auto-replied" for r in replies)
    [notice] = [r for r in replies if "we will not confirm each further message today" in body(r)]
    assert "(11 so far)" in body(notice)
    skipped = [p["skip_reason"] for p in report.plans if p["skip_reason"]]
    assert len(skipped) == 3 and all(reason.startswith("cap:daily-limit") for reason in skipped)


def test_cap_is_configurable_and_starts_again_the_next_day(world: World) -> None:
    """With acks_per_sender_per_day: 2 the notice comes third; the next day the count starts again."""
    world.write_config(limits={"acks_per_sender_per_day": 2})
    clock = FakeClock(TUESDAY_MORNING)
    separate_questions(world, 4)
    world.once(clock)
    assert len(world.sent_to(CUSTOMER)) == 3
    clock.advance(days=1)
    world.deliver(mail("One more question: do you ship to Norway?", subject="Shipping to Norway"))
    world.once(clock)
    replies = world.sent_to(CUSTOMER)
    assert len(replies) == 4
    assert "Shipping to Norway" in replies[-1]["Subject"]


def test_cap_counts_each_sender_separately(world: World) -> None:
    """One busy sender does not use up the acknowledgments of another."""
    world.write_config(limits={"acks_per_sender_per_day": 1})
    separate_questions(world, 3)
    world.deliver(mail(sender="Bob <bob@example.org>"))
    world.once(FakeClock(TUESDAY_MORNING))
    assert len(world.sent_to(CUSTOMER)) == 2
    assert len(world.sent_to("bob@example.org")) == 1


# ---------------------------------------------------------------- reward codes


def defect_report(sender: str, n: int) -> bytes:
    return mail(f"The mug from order 7712{n} arrived broken.", sender=sender, subject=f"Broken mug {n}")


def test_defect_replies_hand_out_each_reward_code_once(world: World) -> None:
    """Defect reports get the next unused code from the pool, each code once, also after a restart."""
    (world.root / "codes.txt").write_text("# thank-you codes\nTHANKS-AAA\nTHANKS-BBB\n\nTHANKS-CCC\n")
    world.write_config(paths={"reward_codes": "codes.txt"})
    world.deliver(defect_report("Ada <ada@example.org>", 1))
    world.deliver(defect_report("Bob <bob@example.org>", 2))
    world.once()
    world.deliver(defect_report("Cy <cy@example.org>", 3))
    world.deliver(defect_report("Di <di@example.org>", 4))
    world.once()
    texts = {who: body(world.sent_to(f"{who}@example.org")[0]) for who in ("ada", "bob", "cy", "di")}
    assert "THANKS-AAA" in texts["ada"]
    assert "THANKS-BBB" in texts["bob"]
    assert "THANKS-CCC" in texts["cy"]
    assert "THANKS-" not in texts["di"]  # the pool is empty: no code, and no empty promise
    assert "code for your next order" not in texts["di"]
    assert "thank you for telling us" in texts["di"]


def test_reward_code_is_not_used_up_by_a_capped_defect_report(world: World) -> None:
    """A defect report that only gets the 'we got your messages' notice keeps the code in the pool."""
    (world.root / "codes.txt").write_text("THANKS-AAA\nTHANKS-BBB\n")
    world.write_config(paths={"reward_codes": "codes.txt"}, limits={"acks_per_sender_per_day": 1})
    clock = FakeClock(TUESDAY_MORNING)
    world.deliver(defect_report("Ada <ada@example.org>", 1))
    world.deliver(defect_report("Ada <ada@example.org>", 2))
    world.once(clock)
    world.deliver(defect_report("Bob <bob@example.org>", 3))
    world.once(clock)
    # Replies go out over parallel SMTP connections, so the sink's order is not the ledger's.
    to_ada = [body(m) for m in world.sent_to("ada@example.org")]
    notices = [text for text in to_ada if "(2 so far)" in text]
    acks = [text for text in to_ada if text not in notices]
    assert len(notices) == 1 and len(acks) == 1
    assert "THANKS-AAA" in acks[0] and "THANKS-" not in notices[0]
    assert "THANKS-BBB" in body(world.sent_to("bob@example.org")[0])


def test_no_reward_code_for_other_questions(world: World) -> None:
    """Only defect reports take a code from the pool."""
    (world.root / "codes.txt").write_text("THANKS-AAA\n")
    world.write_config(paths={"reward_codes": "codes.txt"})
    world.deliver(mail("Hello, where is my order 77120?"))
    world.once()
    assert "THANKS-AAA" not in body(world.sent_to(CUSTOMER)[0])


# ---------------------------------------------------------------- the default texts


@pytest.mark.parametrize("name", sorted(n for n in Replies(REPO / "replies").names()
                                        if not n.startswith(("owner_", "snippets/", "_"))))
def test_default_replies_render_without_ragged_lines(name: str) -> None:
    """Each customer reply renders with realistic values: footer last, no doubled blank lines."""
    values = sample_context() | {"footer": "Example Shop · +49 30 1234567 · https://shop.example"}
    text = Replies(REPO / "replies").render(name, values).text
    assert text.startswith(("Hello Ada,\n\n", "Hallo Ada,\n\n"))  # English, or German (faq_de)
    assert text.rstrip().endswith("-- \nExample Shop · +49 30 1234567 · https://shop.example")
    assert "\n\n\n" not in text
    assert "\n\n-- \n" in text  # the signature stands apart
    assert "  " not in text.replace("-- \n", "")


def test_templates_render_as_in_jinjas_own_sandbox(tmp_path: Path) -> None:
    """Template globals kept in a dict (``_SandboxedEnvironment``) render as Jinja2's ChainMap of them."""
    folder = tmp_path / "replies"
    shutil.copytree(REPO / "replies", folder)
    (folder / "globals.txt").write_text('{% for i in range(2) %}{{ i }}{% endfor %} {{ dict(a=1) }}\n'
                                        '{% include "_offers.txt" %}{{ footer }}\n')
    replies = Replies(folder)
    stock = Replies(folder)
    stock.env = SandboxedEnvironment(**{k: getattr(replies.env, k) for k in (
        "loader", "auto_reload", "undefined", "autoescape", "keep_trailing_newline", "trim_blocks",
        "lstrip_blocks")})
    assert not isinstance(stock.env, type(replies.env))
    values = sample_context() | {"mentions": ["unsubscribe", "cancellation"], "snippets": ["sizing"]}
    for name in sorted(n for n in replies.names() if not n.startswith("snippets/")):
        for language in ("en", "de"):
            assert replies.render(name, values | {"language": language}) == \
                stock.render(name, values | {"language": language}), name


def test_eta_sample_reads_as_a_promise() -> None:
    """'by Monday 10:00' appears in the acknowledgment a customer gets for a question."""
    values = sample_context() | {"eta": "Monday 10:00", "mentions": []}
    assert "write back by Monday 10:00" in Replies(REPO / "replies").render("other", values).text



HEADER_NAMES = ("Subject", "To", "From", "In-Reply-To", "References", "X-Supportd-Ref", "Content-Type")


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(HEADER_NAMES),
       value=st.text(alphabet=st.characters(max_codepoint=0x7f), max_size=120)
       | st.text(alphabet=" \tabc,;<>@=?.\"", max_size=90) | st.text(max_size=40))
def test_outgoing_headers_are_written_exactly_as_compat32_writes_them(name: str, value: str) -> None:
    """A reply's headers read the same byte for byte as before the faster serialisation."""
    for fold in ("fold", "fold_binary"):
        assert folded(OUTGOING_POLICY, fold, name, value) == folded(email.policy.compat32, fold, name, value)


def folded(policy: email.policy.Compat32, fold: str, name: str, value: str) -> object:
    """The folded header, or the kind of error (compat32 refuses a value that hides a header)."""
    try:
        return getattr(policy, fold)(name, value)
    except Exception as exc:
        return type(exc)

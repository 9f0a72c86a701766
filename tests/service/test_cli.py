"""The command line as a newcomer meets it: check, try (its JSON contract), and the demo."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from supportd_testing.localmail import dovecot_available

from conftest import CORPUS, corpus_path, mail

CONTRACT_KEYS = {"primary_intent", "intents", "explicit_request", "auto_reply", "skip_reason", "rule", "reply",
                 "held_action", "own_text"}
# `try --json` on the shared corpus, as main answered before the layout change (issue 16): hash, file.
TRY_DIGESTS = Path(__file__).parents[1] / "fixtures" / "try-json-corpus.sha256"
INTENTS = {"delivery_status", "defect", "unsubscribe", "cancellation", "other"}


def supportd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supportd", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_check_passes_on_the_defaults() -> None:
    """`supportd check` with no config checks the default rules and replies, and finds them sound."""
    result = supportd("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:")


def test_try_json_answers_the_contract(tmp_path: Path) -> None:
    """One JSON object per message, one per line, with the keys the contract promises."""
    cancel = tmp_path / "cancel.eml"
    cancel.write_bytes(mail("Please cancel my order 77120.", sender="Bob <bob@example.org>", subject="Cancel",
                            headers={"Reply-To": "attacker@evil.example"}))
    robot = tmp_path / "robot.eml"
    robot.write_bytes(mail("I am away", subject="Out of office", headers={"Auto-Submitted": "auto-replied"}))
    result = supportd("try", "--json", "--address", "support@shop.example", str(cancel), str(robot))
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert set(first) >= CONTRACT_KEYS
    assert first["primary_intent"] == "cancellation" and first["intents"][0] == "cancellation"
    assert first["explicit_request"] == "cancellation"
    assert first["held_action"] == {"action": "cancel_order", "confirm_to": "bob@example.org"}
    assert first["reply"]["to"] == "bob@example.org"
    assert first["auto_reply"] is True and first["skip_reason"] is None
    assert first["rule"] == "cancel-order" and "cancel my order" in first["why"]
    assert second["auto_reply"] is False and second["reply"] is None
    assert second["skip_reason"].startswith("guard:auto-submitted")


def test_try_json_shows_the_own_words_the_rules_read(tmp_path: Path) -> None:
    """`own_text` is the customer's new words: no quoted history, no signature, none of our own text."""
    body = ("Hmm, not sure yet.\n\n"
            "2026-11-03 10:00 GMT+01:00 Shop <support@shop.example>:\n\n"
            "To go ahead, reply to this email with \"yes\" (or \"confirm\").\n")
    pasted = ("Hmm, not sure yet.\n\n"
              "Before we do anything that cannot be taken back, we want to be sure it was you\n"
              "To go ahead, reply to this email with \"yes\" (or \"confirm\").\n\nAnna\n")
    for number, text in enumerate((body, pasted)):
        (tmp_path / f"{number}.eml").write_bytes(mail(text, subject="Re: Please confirm"))
    result = supportd("try", "--json", "--address", "support@shop.example",
                      str(tmp_path / "0.eml"), str(tmp_path / "1.eml"))
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer["own_text"] for answer in answers] == ["Hmm, not sure yet.", "Hmm, not sure yet.\n\nAnna"]


@functools.cache
def corpus_answers() -> tuple[Path, list[dict[str, Any]]]:
    """`supportd try --json` over every message file of the shared corpus (run once per session)."""
    corpus = corpus_path()
    files = sorted(str(p) for p in corpus.rglob("*") if p.is_file() and "intents" not in p.parts
                   and p.suffix not in (".md", ".csv") and not p.name.startswith(("LICENSE", "COPYING", "README",
                                                                                  "MIT-LICENSE")))
    result = supportd("try", "--json", "--address", "support@shop.example", *files, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(answers) == len(files)
    return corpus, answers


def test_try_answers_every_corpus_file_without_a_crash() -> None:
    """Every message under ../shared/corpus gets an answer from `try --json`, none an error, none a reply to a robot."""
    corpus, answers = corpus_answers()
    for answer in answers:
        assert set(answer) >= CONTRACT_KEYS, answer["file"]
        assert "error" not in answer, answer
        assert answer["primary_intent"] in INTENTS
    labels = dict(line.split(",")[:2] for line in (CORPUS / "labels.csv").read_text().splitlines()[1:])
    robots = [a for a in answers if labels.get(str(Path(a["file"]).relative_to(corpus))) in
              ("bounce", "auto-reply", "list", "feedback-report")]
    assert robots and not any(a["auto_reply"] for a in robots)


def answer_digest(answer: dict[str, Any], corpus: Path) -> tuple[str, str]:
    """(the file, relative to the corpus; a short hash of its whole answer). A reply's text and HTML are left
    out: they name a due time that moves with the clock (its subject, recipient and template stay in)."""
    stable = {**answer, "file": str(Path(answer["file"]).relative_to(corpus))}
    if stable.get("reply"):
        stable["reply"] = {k: v for k, v in stable["reply"].items() if k not in ("text", "html")}
    text = json.dumps(stable, sort_keys=True, ensure_ascii=False)
    return stable["file"], hashlib.sha256(text.encode()).hexdigest()[:12]


def test_try_json_on_the_corpus_is_what_it_was_before_the_layout_change() -> None:
    """The layout change moved modules, not decisions: `try --json` on the corpus hashes as on main before it."""
    corpus, answers = corpus_answers()
    before = dict(line.split("  ", 1)[::-1] for line in TRY_DIGESTS.read_text().splitlines())
    now = dict(answer_digest(answer, corpus) for answer in answers)
    common = set(before) & set(now)
    if len(common) < len(before) // 2:
        pytest.skip(f"../shared/corpus is another corpus than the one {TRY_DIGESTS.name} was made from")
    assert sorted(f for f in common if before[f] != now[f]) == []


def test_try_reports_an_unreadable_message_and_goes_on(tmp_path: Path) -> None:
    """A file that cannot be read still gets an object with an 'error' key; the exit code says so."""
    good = tmp_path / "good.eml"
    good.write_bytes(mail())
    result = supportd("try", "--json", str(tmp_path / "missing.eml"), str(good))
    assert result.returncode == 1
    missing, found = (json.loads(line) for line in result.stdout.splitlines())
    assert "error" in missing and missing["auto_reply"] is False
    assert "error" not in found and found["primary_intent"] == "delivery_status"


def test_demo_shows_decisions_and_the_replies_customers_received() -> None:
    """`supportd demo` runs the real daemon on local servers and shows each message and its reply."""
    if not dovecot_available():
        import pytest

        pytest.skip("Dovecot is not installed (the README's commands install it)")
    result = supportd("demo", timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.count("-> to ") >= 5  # replies to customers (and the owner)
    assert "Tracking number (DHL): 00340434161234567890" in out
    assert "held cancel_order" in out
    assert "no reply: guard:auto-submitted" in out and "no reply: guard:list-header" in out
    assert "shop hook ran for: ['supportd-c" in out
    assert "Traceback" not in out + result.stderr  # nothing that looks like a failure when none happened
    assert "We accept PayPal, Visa, Mastercard and bank transfer" in out  # an FAQ answered at once


def _loaded_by(imports: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after ``imports``."""
    probe = f"import sys\n{imports}\nprint(sorted(m for m in {modules!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    loaded: list[str] = ast.literal_eval(result.stdout.strip())
    return loaded


def test_offline_try_loads_neither_the_daemon_nor_imap_nor_the_scheduler() -> None:
    """`supportd try` reads the rules without the daemon: no IMAP client, no scheduler, no daemon module."""
    assert _loaded_by("import supportd.service.cli, supportd.service.tryout", (
        "supportd.service.daemon", "supportd.intake.inbox", "supportd.service.scheduler", "imapclient",
        "schedule")) == []


def test_offline_try_and_status_load_no_mail_library() -> None:
    """`supportd try` and `supportd status` work without a mail server: neither aiosmtplib nor imapclient is loaded."""
    imports = ("import supportd.service.cli, supportd.service.tryout, supportd.state.health, supportd.state.writer\n"
               "from supportd.service.tryout import try_context")
    assert _loaded_by(imports, ("aiosmtplib", "imapclient")) == []


def test_nothing_in_the_installed_daemon_can_install_packages() -> None:
    """The daemon package runs no package manager: test servers and their setup live outside it, in testing/."""
    package = Path(__file__).resolve().parents[2] / "supportd"
    calls = re.compile(r"""["'](apt-get|apt|dpkg|pip|pip3|ensurepip|sudo)["']""")  # a program run, not advice
    found = [f"{p.relative_to(package)}:{n}" for p in package.rglob("*.py")
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1) if calls.search(line)]
    assert found == []
    assert not (package / "localmail.py").exists()

"""Hostile mail: the worst decision time and peak memory for one message, whatever it contains.

``python -m bench.hostile --json`` builds each hostile message (long whitespace runs, deep quoting,
thousands of reply headers, huge single lines, NUL bodies, many parts, a huge display name, deep
HTML), and decides it (parse, guard, rules, plan: what ``supportd try`` and the daemon do) in a
fresh process, so each message's peak RSS is its own. Goal: at most 0.5 s per message and at most
120 MB, for mail within ``limits.max_message_bytes``.

Keys: ``worst_decision_s``, ``worst_case``, ``peak_rss_mb``, ``peak_rss_case``, ``targets_met``,
and per case ``{bytes, decision_s, rss_mb, outcome}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {"decision_s": 0.5, "rss_mb": 120.0}
HEAD = ("From: Eve <eve@example.org>\r\nTo: support@shop.example\r\nSubject: {subject}\r\n"
        "Message-ID: <{case}@example.org>\r\nDate: Tue, 03 Mar 2026 09:00:00 +0000\r\n")


def plain(case: str, body: bytes, subject: str = "about my order", extra: str = "",
          charset: str = "utf-8") -> bytes:
    """A text/plain message; bodies are built as bytes, so building them costs no more than holding them."""
    head = HEAD.format(subject=subject, case=case) + extra
    return (head + f"Content-Type: text/plain; charset={charset}\r\n\r\n").encode() + body


def _many_parts(case: str, count: int) -> bytes:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {n} about my order\r\n" for n in range(count))
    head = HEAD.format(subject="parts", case=case) + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    return (head + parts + "--b--\r\n").encode()


def _nested_parts(case: str, depth: int) -> bytes:
    body = "Content-Type: text/plain\r\n\r\nwhere is my order 77120?\r\n"
    for level in range(depth):
        body = f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n{body}\r\n--b{level}--\r\n'
    return (HEAD.format(subject="nested", case=case)).encode() + body.encode()


def _html(case: str, body: bytes) -> bytes:
    return (HEAD.format(subject="html", case=case) + "Content-Type: text/html\r\n\r\n").encode() + body


def _exe_after_padding(case: str) -> bytes:
    """A program attached after 20 MB of padding (the guard must still see its name)."""
    head = HEAD.format(subject="invoice", case=case) + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    return (head.encode() + b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + b"A" * 20_000_000
            + b'\r\n--b\r\nContent-Type: application/octet-stream; name="invoice.exe"\r\n'
            b'Content-Disposition: attachment; filename="invoice.exe"\r\n\r\nTVqQ\r\n--b--\r\n')


CASES: dict[str, Callable[[str], bytes]] = {
    "order_then_1600_spaces": lambda c: plain(c, b"about my order" + b" " * 1600),
    "order_then_1mb_spaces": lambda c: plain(c, b"where is my order" + b" " * 1_000_000 + b"77120"),
    "confirm_then_40k_spaces": lambda c: plain(c, b"please confirm" + b" " * 40_000),
    "confirm_then_5mb_whitespace": lambda c: plain(c, b"please confirm" + b" \t\n" * 1_700_000),
    "short_lines_24mb": lambda c: plain(c, b"a\n" * 12_000_000),
    "many_words_then_spaces": lambda c: plain(c, (b"cancel order confirm " + b" " * 200) * 20_000),
    "deep_quoting": lambda c: plain(c, b"".join(b">" * n + b" where is my order\r\n" for n in range(2_000))),
    "quote_depth_100k": lambda c: plain(c, b"Please cancel my order 77120.\r\n" + b">" * 100_000 + b" yes\r\n"),
    "5000_reply_headers": lambda c: plain(
        c, b"Where is my order?", extra="".join(f"References: <r{n}@example.org>\r\n" for n in range(5_000))
        + "In-Reply-To: " + " ".join(f"<i{n}@example.org>" for n in range(5_000)) + "\r\n"),
    "5000_received_headers": lambda c: plain(
        c, b"Where is my order?", extra="".join(f"Received: from h{n} by mx; Tue, 3 Mar 2026 09:00 +0000\r\n"
                                                for n in range(5_000))),
    "huge_single_line_10mb": lambda c: plain(c, b"cancel my order please " * 450_000),
    "huge_line_no_spaces_24mb": lambda c: plain(c, b"a" * 24_000_000),
    "nul_body_17mb": lambda c: plain(c, b"\0" * 17_000_000),
    "many_parts_5000": lambda c: _many_parts(c, 5_000),
    "nested_parts_60": lambda c: _nested_parts(c, 60),
    "nested_parts_2000": lambda c: _nested_parts(c, 2_000),
    "display_name_200kb": lambda c: (b"From: " + b"x" * 200_000 + b" <big@example.org>\r\n"
                                     + plain(c, b"Where is my parcel?").split(b"\r\n", 1)[1]),
    "subject_1mb": lambda c: plain(c, b"hi", subject="cancel " * 150_000),
    "deep_html_20k": lambda c: _html(c, b"<div><blockquote>" * 20_000 + b"where is my order"
                                     + b"</blockquote></div>" * 20_000),
    "signature_lines_100k": lambda c: plain(c, b"Where is my order?\r\n" + b"--\r\nName\r\n" * 100_000),
    "sentences_without_end_2mb": lambda c: plain(c, b"please cancel my order and " * 75_000),
    "exe_after_20mb": _exe_after_padding,
    "question_lines_3mb": lambda c: plain(c, b"Where is my order? It was due on Monday.\n" * 75_000),
    "date_lines_3mb": lambda c: plain(c, b"On 3 Nov 2026 Shop\n" * 150_000),
    "header_labels_3mb": lambda c: plain(c, b"From: x\nSent: y\n" * 190_000),
    "unterminated_tags_html": lambda c: _html(c, b"<a" * 250_000),
    "unterminated_comments_html": lambda c: _html(c, b"<!--" * 125_000),
    "unterminated_end_tags_html": lambda c: _html(c, b"</" * 250_000),
    "unterminated_instructions_html": lambda c: _html(c, b"<?" * 250_000),
}


def decide_one(case: str) -> dict[str, Any]:
    """Build and decide one hostile message in this process; its time and this process's peak RSS."""
    from supportd.base.config import offline_config
    from supportd.service.tryout import decide, try_context

    ctx = try_context(offline_config())
    raw = CASES[case](case)
    started = time.perf_counter()
    try:
        plan = decide(ctx, raw)
        outcome = plan.outcome or (plan.skip_reason or "")
    except Exception as exc:  # a timeout is a result here: the daemon quarantines such a message
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    from bench.common import _vm_hwm_kb  # after the decision: its own imports must not be the peak

    # The process's own peak (VmHWM): ru_maxrss would start at the parent's RSS (see bench.common).
    rss_mb = (_vm_hwm_kb(Path("/proc/self/status")) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    return {"bytes": len(raw), "decision_s": round(seconds, 3), "rss_mb": round(rss_mb, 1), "outcome": outcome[:120]}


def measure(cases: list[str] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for case in cases or list(CASES):
        done = subprocess.run([sys.executable, "-m", "bench.hostile", "--one", case], capture_output=True,
                              text=True, timeout=600, check=False, cwd=Path(__file__).resolve().parents[1])
        if done.returncode != 0:
            results[case] = {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
            continue
        results[case] = json.loads(done.stdout)
    measured = {k: v for k, v in results.items() if "decision_s" in v}
    worst = max(measured, key=lambda k: measured[k]["decision_s"])
    biggest = max(measured, key=lambda k: measured[k]["rss_mb"])
    figures = {"worst_decision_s": measured[worst]["decision_s"], "worst_case": worst,
               "peak_rss_mb": measured[biggest]["rss_mb"], "peak_rss_case": biggest}
    met = {"decision_s": figures["worst_decision_s"] <= TARGETS["decision_s"],
           "rss_mb": figures["peak_rss_mb"] <= TARGETS["rss_mb"], "no_errors": len(measured) == len(results)}
    return {**figures, "targets": TARGETS, "targets_met": met, "cases": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object (default: indented)")
    parser.add_argument("--one", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(decide_one(args.one)))
        return 0
    result = measure(args.case)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0 if all(result["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""supportd's command line: run, once, check, try, demo, digest, pending, tickets, resolve, status, init, recover."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supportd import __version__
from supportd.base.clock import SystemClock
from supportd.base.config import Config, load_config, offline_config
from supportd.base.errors import InvalidFiles, StateError

DEFAULT_CONFIG = "/etc/supportd/supportd.yaml"
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_STATE = 0, 1, 2, 3
log = logging.getLogger("supportd")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_INVALID
    try:
        result: int = args.handler(args)
        return result
    except InvalidFiles as exc:
        print("supportd cannot start; fix these and try again:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    except StateError as exc:
        print(f"supportd: {exc}", file=sys.stderr)
        return EXIT_STATE
    except KeyboardInterrupt:
        return EXIT_FAILED


def setup_logging(verbose: bool) -> None:
    """Lines for journald on stderr: it adds the time, so we add it only on a terminal."""
    fmt = "%(levelname)s %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    debug = verbose or bool(os.environ.get("SUPPORTD_DEBUG"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format=fmt, stream=sys.stderr)
    # The lines name no source line, thread or process: each record skips looking them up (the
    # logging HOWTO's "Optimization"), 2.5 of 13 us a line; a backlog logs two lines a message.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for noisy in ("imapclient", "asyncio", "aiosmtplib", "mail.log"):
        if os.environ.get("SUPPORTD_DEBUG") != "protocol":
            logging.getLogger(noisy).setLevel(logging.WARNING)


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("SUPPORTD_CONFIG") or DEFAULT_CONFIG)


def load(args: argparse.Namespace) -> Config:
    path = config_path(args)
    if not path.exists():
        raise InvalidFiles([_missing_config(path)])
    return load_config(path)


def load_as_owner(args: argparse.Namespace) -> Config:
    """The config, for a command that touches the state: run as root, it acts as the state folder's owner."""
    from supportd.state.writer import act_as_state_owner

    return act_as_state_owner(load(args))


def change(args: argparse.Namespace, request: dict[str, Any]) -> int:
    """Hand a state change to the running daemon, or make it here as the one writer (see supportd.state.writer)."""
    from supportd.act import changes
    from supportd.intake.inbox import RECONNECT_ERRORS
    from supportd.service.daemon import Daemon, open_context
    from supportd.state.writer import change_state

    config = load_as_owner(args)

    def apply_here(req: dict[str, Any]) -> dict[str, Any]:
        answer = changes.apply(open_context(config, SystemClock()), req)
        if answer.get("queued"):
            try:
                Daemon(config).run_once()
                answer["text"] += "; sent"
            except Exception as exc:  # the mail stays queued either way
                if isinstance(exc, (OSError, *RECONNECT_ERRORS)):  # the mail server: the daemon sends it later
                    answer["text"] += f"; the mail is queued and goes out when supportd runs ({exc})"
                else:  # anything else is no "later": say what failed
                    answer["text"] += (f"; sending now failed ({type(exc).__name__}: {exc}); the mail stays "
                                       "queued, see supportd status")
        return answer

    answer = change_state(config.state_dir, request, apply_here)
    print(answer["text"], file=sys.stdout if answer["ok"] else sys.stderr)
    return EXIT_OK if answer["ok"] else EXIT_FAILED


def _missing_config(path: Path) -> Any:
    from supportd.base.errors import Problem

    return Problem(str(path), 1, "no config file here; create one with 'supportd init DIR' "
                                 "or pass --config FILE")


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from supportd.service.daemon import Daemon
    from supportd.state.writer import writer_lock

    config = load_as_owner(args)
    with writer_lock(config.state_dir, "daemon"):
        try:
            daemon = Daemon(config)
        except StateError as exc:  # not a crash to restart from: the owner must look (unit: RestartPreventExitStatus=3)
            from supportd.service import sdnotify
            from supportd.service.daemon import tell_owner_directly

            sdnotify.status(f"stopped: the state folder needs you: {exc}"[:400])
            tell_owner_directly(config, "state-broken", f"supportd stopped and answers no mail until this is "
                                f"fixed:\n\n{exc}\n\nThen: systemctl restart supportd")
            raise
        daemon.install_signal_handlers()
        return daemon.run()


def cmd_once(args: argparse.Namespace) -> int:
    from supportd.service.daemon import Daemon
    from supportd.state.writer import writer_lock

    config = load_as_owner(args)
    with writer_lock(config.state_dir, "command"):
        report = Daemon(config).run_once()
    print(f"handled {report.handled} messages, acknowledged {report.acknowledged}, "
          f"sent {report.sent} mails, quarantined {report.quarantined}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from supportd.deliver.replies import Replies
    from supportd.owner import digest
    from supportd.service.ownerfiles import load_rules_and_replies

    config = load(args) if (args.config or os.environ.get("SUPPORTD_CONFIG") or
                            Path(DEFAULT_CONFIG).exists()) else offline_config()
    problems = []
    try:
        rules, replies = load_rules_and_replies(config)
    except InvalidFiles as exc:
        problems.extend(exc.problems)
        problems.extend(p for p in Replies(config.replies_dir).check() if p.warning)
    else:
        intent_replies: dict[str, set[str]] = {}
        for rule in rules.rules:
            if rule.reply:
                intent_replies.setdefault(rule.intent, set()).add(rule.reply)
        problems.extend(p for p in Replies(config.replies_dir).check(intent_replies) if p.warning)
    problems.extend(digest.check_template(config, SystemClock().now()))
    if problems:
        for problem in sorted(set(problems)):
            print(problem)
        return EXIT_INVALID
    where = config.source or "the default rules and replies"
    unfilled = rules.faq.unfilled()
    print(f"ok: {where}: {len(rules.rules)} rules for {len(rules.intents)} intents, "
          f"{len(rules.faq.entries)} FAQ entries ({len(unfilled)} without an answer), {len(replies.names())} replies")
    for entry in unfilled:  # to do, not wrong: on stderr, so stdout stays the one "ok:" line
        print(f"{entry.where}: FAQ entry '{entry.name}' has no answer yet: write one under 'answer:' "
              "(until then it never sends)", file=sys.stderr)
    return EXIT_OK


def cmd_try(args: argparse.Namespace) -> int:
    from supportd.service.tryout import try_messages

    config = load(args) if args.config else offline_config(args.address or "support@shop.example")
    if args.address:
        config = dataclasses.replace(config, shop=dataclasses.replace(config.shop, support_address=args.address))
    return try_messages(config, [Path(p) for p in args.messages], as_json=args.json)


def cmd_demo(args: argparse.Namespace) -> int:
    try:  # test support is not part of the installed daemon (see testing/)
        from supportd_testing.demo import run_demo
    except ImportError:
        print("supportd demo needs the test servers in testing/ of the source tree: run ./demo.sh there",
              file=sys.stderr)
        return EXIT_INVALID
    return run_demo(keep=args.keep)


def cmd_digest(args: argparse.Namespace) -> int:
    """The last seven days' digest: written to files (``--preview``) or sent to the owner (``--send``)."""
    from supportd.owner import digest
    from supportd.service.daemon import open_context

    if args.send:
        return change(args, {"kind": "digest-send"})
    ctx = open_context(load_as_owner(args), SystemClock())
    week = digest.week_ending(ctx, ctx.now())
    facts = digest.gather(ctx, week)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    page = digest.render_html(ctx.config, facts)
    if page.problem:
        print(f"{page.problem} (digest.html below uses the shipped template)", file=sys.stderr)
    (out / "digest.html").write_text(page.html, encoding="utf-8")
    (out / "digest.txt").write_text(digest.render_text(ctx, facts), encoding="utf-8")
    print(f"wrote {out / 'digest.html'} and {out / 'digest.txt'} (nothing sent)")
    return EXIT_OK


def cmd_pending(args: argparse.Namespace) -> int:
    """Actions held for a customer's confirmation (and confirmed ones not yet done); ``drop ID`` withdraws one."""
    from supportd.act import pending
    from supportd.service.daemon import open_context

    if args.action == "drop":
        if not args.id:
            print("say which one: supportd pending drop ID (the ids are in 'supportd pending')", file=sys.stderr)
            return EXIT_FAILED
        return change(args, {"kind": "pending-drop", "id": args.id})
    ctx = open_context(load_as_owner(args), SystemClock())
    rows = [p for p in ctx.ledger.find("pending") if p["state"] not in pending.FINAL]
    if not rows:
        print("no pending actions")
    for held in sorted(rows, key=lambda p: p["created"]):
        state = "expired" if pending.is_expired(ctx, held) else held["state"]
        print(f"{held['id']:<10} {state:<10} {pending.describe(held['action'], held['params']):<36} "
              f"{held['address']:<30} ticket {held['ticket']:<6} expires {held['expires'][:16]} UTC")
    return EXIT_OK


def cmd_tickets(args: argparse.Namespace) -> int:
    """Tickets that are open, overdue, answered or waiting (``--all``: closed ones too), overdue first."""
    import json

    from supportd.act import tickets
    from supportd.service.daemon import open_context

    ctx = open_context(load_as_owner(args), SystemClock())
    rows = tickets.listed(ctx, include_closed=args.all)
    now = ctx.now()
    if args.json:
        for ticket in rows:
            print(json.dumps(ticket_json(ticket, now), ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("no open tickets")
    for line in ticket_lines(rows, now, ctx.config.hours.timezone):
        print(line)
    return EXIT_OK


def ticket_json(ticket: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """One ticket for ``supportd tickets --json`` (times in ISO 8601, UTC, or null)."""
    from supportd.act.tickets import state_of

    return {
        "number": ticket["number"], "state": state_of(ticket, now), "customer": ticket["customer"],
        "name": ticket.get("name", ""), "subject": ticket["subject"], "intent": ticket.get("intent"),
        "opened": ticket.get("opened"), "due": ticket.get("due") if ticket["state"] == "open" else None,
        "last_person_reply": ticket.get("last_person_reply"),
        "last_customer_mail": ticket.get("last_customer_mail") or ticket.get("last_message"),
        "messages": ticket.get("messages", 1), "closed_at": ticket.get("closed_at"),
    }


def ticket_lines(rows: list[dict[str, Any]], now: dt.datetime, timezone: str) -> list[str]:
    """'#1042  OVERDUE   by 5 h   open 2 days   defect   ada@example.org   Broken mug' (a table)."""
    from supportd.act.tickets import state_of
    from supportd.base.clock import parse_iso
    from supportd.owner.alerts import human_duration, human_moment

    lines = []
    for ticket in rows:
        state = state_of(ticket, now)
        due = parse_iso(ticket["due"]) if ticket.get("due") else None
        replied = parse_iso(ticket["last_person_reply"]) if ticket.get("last_person_reply") else None
        if state == "overdue" and due is not None:
            detail = f"by {human_duration((now - due).total_seconds())}"
        elif state == "open" and due is not None:
            detail = f"due {human_moment(due, timezone, now)}"
        elif state == "answered" and replied is not None:
            detail = f"{human_moment(replied, timezone, now)}"
        elif state == "waiting":
            detail = "for the customer"
        else:
            detail = ""
        shown = "OVERDUE" if state == "overdue" else state
        age = human_duration((now - parse_iso(ticket["opened"])).total_seconds())
        lines.append(f"#{ticket['number']:<6} {shown:<9} {detail:<24} open {age:<14} {ticket['intent']:<16} "
                     f"{ticket['customer']:<30} {ticket['subject'][:50]}")
    return lines


def cmd_resolve(args: argparse.Namespace) -> int:
    """Close a ticket and, unless --quiet, tell the customer personally that it is sorted."""
    number = args.ticket.strip().lstrip("#")
    if not number.isdigit():
        print(f"'{args.ticket}' is not a ticket number (like 1042); the open ones: supportd tickets",
              file=sys.stderr)
        return EXIT_FAILED
    return change(args, {"kind": "resolve", "ticket": int(number), "message": args.message or "",
                         "quiet": bool(args.quiet)})


def cmd_status(args: argparse.Namespace) -> int:
    """Is supportd running, can it reach its servers, and is anything waiting for the owner?"""
    import json

    from supportd.state import health
    from supportd.state.writer import running_daemon

    config = load(args)
    if not os.access(config.state_dir, os.R_OK | os.X_OK):
        raise StateError(f"cannot read the state folder {config.state_dir} as this user; "
                         "run it as root (sudo) or as the user supportd runs as")
    report = health.gather(config.state_dir, running_daemon(config.state_dir), SystemClock().now())
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print("\n".join(health.render(report)))
    return EXIT_FAILED if report["needs_owner"] else EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from supportd.owner.scaffold import write_scaffold

    return write_scaffold(Path(args.dir), force=args.force)


def cmd_recover(args: argparse.Namespace) -> int:
    from supportd.state.recover import recover_state
    from supportd.state.writer import writer_lock

    config = load_as_owner(args)
    with writer_lock(config.state_dir, "command", wait=2.0):
        return recover_state(config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supportd", description="The support daemon for small shops.")
    parser.add_argument("--version", action="version", version=f"supportd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        if name not in ("demo", "init"):
            p.add_argument("--config", help=f"config file (default: $SUPPORTD_CONFIG or {DEFAULT_CONFIG})")
        return p

    command("run", cmd_run, "watch the mailbox and answer as mail arrives (the daemon)")
    command("once", cmd_once, "one pass over the mailbox, then exit")
    command("check", cmd_check, "check the config, rules and replies; list file:line problems")
    p = command("try", cmd_try, "show what supportd would do with messages; sends nothing, keeps nothing")
    p.add_argument("--address", help="the support address for this run")
    p.add_argument("--json", action="store_true", help="one JSON object per message, one per line")
    p.add_argument("messages", nargs="+", metavar="MESSAGE.eml")
    p = command("demo", cmd_demo, "run supportd against local mail servers with sample mail")
    p.add_argument("--keep", action="store_true", help="keep the demo's folder afterwards")
    p = command("digest", cmd_digest, "the weekly digest now")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--preview", action="store_true", help="write it to files, send nothing")
    mode.add_argument("--send", action="store_true", help="send it to the owner now")
    p.add_argument("--out", default="digest-preview", help="folder for --preview (default: digest-preview)")
    p = command("pending", cmd_pending, "list actions waiting for the customer's confirmation")
    p.add_argument("action", nargs="?", choices=["drop"], help="drop ID: withdraw one")
    p.add_argument("id", nargs="?")
    p = command("tickets", cmd_tickets, "list open, overdue, answered and waiting tickets, overdue first")
    p.add_argument("--json", action="store_true", help="one JSON object per ticket, one per line")
    p.add_argument("--all", action="store_true", help="closed tickets (of the last 90 days) too")
    p = command("resolve", cmd_resolve, "close a ticket and tell the customer it is sorted")
    p.add_argument("ticket")
    p.add_argument("--message", help="a personal line for the customer")
    p.add_argument("--quiet", action="store_true", help="close without writing to the customer")
    p = command("init", cmd_init, "write a commented config, the default rules and replies")
    p.add_argument("dir")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p = command("status", cmd_status, "is supportd running and well; what needs you (exit 1 when something does)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    command("recover", cmd_recover, "after a damaged state file: keep it aside, restore the last good copy")
    return parser

"""The state changes a command may ask for, applied by the one writer (see ``supportd.state.writer``).

The same functions run in the daemon (for a request from the ``requests/`` folder) and in the
command itself when no daemon runs, so both ways give the same result and the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from supportd.act import pending
from supportd.act.resolve import resolve_ticket
from supportd.deliver.outbox import queue
from supportd.owner import digest
from supportd.service.context import Context

log = logging.getLogger(__name__)
Answer = dict[str, Any]


def apply(ctx: Context, request: dict[str, Any]) -> Answer:
    """Apply one request under the state lock and commit; the answer says what happened."""
    handler = HANDLERS.get(str(request.get("kind")))
    if handler is None:
        return {"ok": False, "text": f"unknown request {request.get('kind')!r} ({request.get('error', '')})"}
    with ctx.ledger.locked():
        answer = handler(ctx, request)
        ctx.ledger.commit()
    log.info("applied %s from the command line: %s", request.get("kind"), answer["text"])
    return answer


def _resolve(ctx: Context, request: dict[str, Any]) -> Answer:
    quiet = bool(request.get("quiet"))
    outcome = resolve_ticket(ctx, int(request["ticket"]), message=str(request.get("message") or ""),
                             tell_customer=not quiet)
    return {"ok": outcome.done, "text": outcome.text, "queued": outcome.done and not quiet}


def _drop_pending(ctx: Context, request: dict[str, Any]) -> Answer:
    held_id = str(request["id"])
    held = ctx.ledger.get("pending", id=held_id)
    if held is None or held["state"] != pending.WAITING:
        return {"ok": False, "text": f"no waiting action '{held_id}'"}
    ctx.ledger.patch("pending", "id", held_id, state=pending.DROPPED)
    ctx.ledger.record("pending", held_id, action=held["action"], outcome=pending.DROPPED, ticket=held["ticket"])
    return {"ok": True, "text": f"dropped {held_id}: nothing will be done, and a late 'yes' changes nothing"}


def _send_digest(ctx: Context, request: dict[str, Any]) -> Answer:
    week = digest.week_ending(ctx, ctx.now())
    queue(ctx, digest.compose_digest(ctx, week, ref=f"now{ctx.now():%Y%m%d%H%M%S}"))
    return {"ok": True, "text": f"the digest is queued for {ctx.config.shop.owner_address}", "queued": True}


HANDLERS: dict[str, Callable[[Context, dict[str, Any]], Answer]] = {
    "resolve": _resolve,
    "pending-drop": _drop_pending,
    "digest-send": _send_digest,
}

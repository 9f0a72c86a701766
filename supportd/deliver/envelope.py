"""What is sent and how it went: envelopes, send results and outbox states, without any network code.

Kept apart from ``supportd.deliver.mailer`` (which imports aiosmtplib) so that the offline commands
(``supportd try``, ``supportd status``) and everything that only reads the outbox load no SMTP or IMAP
library.

Outbox states (see ``supportd.deliver.outbox``): ``queued -> committing -> sent``, or ``retry`` /
``failed``. ``sent`` is also a send result's status: the server took the reply.
"""

from __future__ import annotations

from dataclasses import dataclass

# A send's result (``Result.status``); SENT is also the outbox state once the server took a reply.
SENT, TEMPORARY, PERMANENT, LOGIN = "sent", "temporary", "permanent", "login"
# 530 authentication required, 534 mechanism too weak, 535 credentials invalid, 538 encryption needed
LOGIN_CODES = frozenset({530, 534, 535, 538})

# An outbox entry's state.
QUEUED, COMMITTING, RETRY, FAILED = "queued", "committing", "retry", "failed"
PENDING_STATES = (QUEUED, RETRY)
UNSENT_STATES = (QUEUED, RETRY, COMMITTING)  # then SENT or FAILED


@dataclass(frozen=True)
class Envelope:
    id: str
    mail_from: str
    to: str
    raw: bytes


@dataclass(frozen=True)
class Result:
    id: str
    status: str
    code: int = 250
    detail: str = ""


def classify_code(code: int) -> str:
    """A login problem is the settings' fault; other 5xx are permanent; 4xx, a lost connection (-1)
    or anything odd is worth another try later."""
    if code in LOGIN_CODES:
        return LOGIN
    return PERMANENT if 500 <= code < 600 else TEMPORARY

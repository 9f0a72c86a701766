"""``supportd recover``: after the state file was damaged, carry on without losing or repeating mail.

supportd never replaces a damaged state file by itself. This command, run by the owner, keeps the
damaged file aside (``state.json.damaged-TIME``, its journal with it), restores the previous good copy
(``state.json.prev``: the state as of the snapshot before, see ``AtomicStorage``), or starts empty when
there is none. The mailbox
itself then says what was finished: handled mail carries the keyword and is not looked at again;
a reply already in the Sent folder is recognised by its Message-ID and not sent again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil

from supportd.base.clock import SystemClock, iso
from supportd.base.config import Config
from supportd.base.errors import StateError
from supportd.state.ledger import SCHEMA_VERSION, STATE_FILE, NotOurs, atomic_write, journal_path, read_state_file


def recover_state(config: Config) -> int:
    state = config.state_dir / STATE_FILE
    previous = state.with_name(f"{STATE_FILE}.prev")
    try:
        read_state_file(state)
        print(f"{state} reads fine; nothing to recover")
        return 0
    except NotOurs as exc:  # a wrong owner (state.json or the tickets file it names), not damage
        print(exc)
        return 3
    except StateError as exc:
        if state.exists() and not os.access(state, os.R_OK | os.W_OK):
            print(exc)
            return 3
    try:
        data = read_state_file(previous)
    except NotOurs as exc:  # the previous copy, or its tickets file, is another user's: restoring it would drop it
        print(exc)
        return 3
    except StateError:
        data = {}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = state.with_name(f"{STATE_FILE}.damaged-{stamp}")
    if state.exists():
        shutil.move(str(state), kept)
        print(f"kept the damaged file as {kept}")
    journal = journal_path(state)
    if journal.exists():  # its lines belong to the damaged file (and may be what is damaged)
        shutil.move(str(journal), f"{kept}.journal")
    if data:
        print(f"restored the previous good copy ({previous.name})")
    else:
        print("no good previous copy: starting with an empty state; handled mail keeps its keyword, "
              "and replies already sent are found in the Sent folder, so nothing is answered twice")
    meta = data.setdefault("meta", {}).setdefault("1", {"schema": SCHEMA_VERSION, "created": iso(SystemClock().now())})
    meta["recovering"] = True
    atomic_write(state, json.dumps(data).encode())
    print("start supportd again; it finishes what was in flight")
    return 0

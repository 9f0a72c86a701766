"""What every step needs: the config, the current rules and replies, the ledger, the clock, the key."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field

from supportd.base.clock import Clock
from supportd.base.config import Config
from supportd.decide.guard import GuardSettings
from supportd.decide.reading import Reader
from supportd.decide.rules import RuleSet
from supportd.deliver.replies import Replies
from supportd.state.ledger import Ledger


@dataclass
class Context:
    config: Config
    rules: RuleSet
    replies: Replies
    ledger: Ledger
    clock: Clock
    secret: bytes
    guard_settings: GuardSettings = field(init=False)

    def __post_init__(self) -> None:
        self.guard_settings = GuardSettings(
            own_addresses=self.config.shop.own_addresses,
            robot_senders=self.config.robot_senders,
            staff_addresses=self.config.shop.people,
        )

    @property
    def reader(self) -> Reader:
        """What reading a message needs (the current rules and replies), without the ledger."""
        return Reader(rules=self.rules, our_text=self.replies.our_text(), guard_settings=self.guard_settings,
                      language=self.config.shop.language)

    def now(self) -> dt.datetime:
        return self.clock.now()

    def local_now(self) -> dt.datetime:
        """Now in the shop's time zone (the Date header of every mail we send)."""
        return self.now().astimezone(zoneinfo.ZoneInfo(self.config.hours.timezone))

    def local_day(self, when: dt.datetime | None = None) -> str:
        """The shop's calendar day (for per-day caps), e.g. '2026-11-23'."""
        zone = zoneinfo.ZoneInfo(self.config.hours.timezone)
        return (when or self.now()).astimezone(zone).date().isoformat()

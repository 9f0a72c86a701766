"""All three benchmarks, one JSON object: ``python bench/run.py --quick --json`` (under 45 s).

Without ``--quick`` the full sizes run (a few minutes): 300 messages one by one for the latency,
3,000 waiting messages for the backlog, 1,000 versus 50,000 messages of history.

The headline keys: ack_p50_ms, ack_p99_ms, idle_floor_p50_ms (latency.py), backlog_msgs_per_s,
rss_mb (backlog.py), history_cost_ratio (history.py); each benchmark's details are under its name.
Targets (full runs, 2 cores): ack p50 at most 100 ms above the IDLE floor and p99 at most 1 s;
backlog at least 200 messages a second; RSS at most 80 MB; history cost ratio at most 1.3.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import backlog, history, latency
from bench.common import versions

QUICK = {"latency_messages": 10, "backlog_messages": 200, "history_small": 1000, "history_large": 5000,
         "history_repeat": 3}
FULL = {"latency_messages": 300, "backlog_messages": 3000, "history_small": 1000, "history_large": 50000,
        "history_repeat": 9}
TARGETS = {"ack_p50_above_floor_ms": 100.0, "ack_p99_ms": 1000.0, "backlog_msgs_per_s": 200.0,
           "rss_mb": 80.0, "history_cost_ratio": 1.3}


def run_all(sizes: dict[str, int]) -> dict[str, Any]:
    seconds: dict[str, float] = {}

    def timed(name: str, benchmark: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        started = time.perf_counter()
        result = benchmark()
        seconds[name] = round(time.perf_counter() - started, 1)
        return result

    lat = timed("latency", lambda: latency.measure(sizes["latency_messages"]))
    back = timed("backlog", lambda: backlog.measure(sizes["backlog_messages"]))
    hist = timed("history", lambda: history.measure(sizes["history_small"], sizes["history_large"],
                                                    sizes["history_repeat"], per_day=history.PER_DAY,
                                                    same_span=None))
    figures = {
        "ack_p50_ms": lat["ack_p50_ms"], "ack_p99_ms": lat["ack_p99_ms"],
        "idle_floor_p50_ms": lat["idle_floor_p50_ms"],
        "backlog_msgs_per_s": back["backlog_msgs_per_s"], "rss_mb": back["rss_mb"],
        "history_cost_ratio": hist["history_cost_ratio"],
    }
    extra = {"ack_p50_above_floor_ms": round(lat["ack_p50_ms"] - lat["idle_floor_p50_ms"], 1),
             "history_cpu_ratio": hist["history_cpu_ratio"]}
    return {**figures, **extra, "targets_met": targets_met(figures), "sizes": sizes, "seconds": seconds,
            "latency": lat, "backlog": back, "history": hist, "versions": versions()}


def targets_met(figures: dict[str, float]) -> dict[str, bool]:
    """Each target against these figures (meaningful for the full sizes only)."""
    return {
        "ack_p50_above_floor": figures["ack_p50_ms"] - figures["idle_floor_p50_ms"]
        <= TARGETS["ack_p50_above_floor_ms"],
        "ack_p99": figures["ack_p99_ms"] <= TARGETS["ack_p99_ms"],
        "backlog_msgs_per_s": figures["backlog_msgs_per_s"] >= TARGETS["backlog_msgs_per_s"],
        "rss_mb": figures["rss_mb"] <= TARGETS["rss_mb"],
        "history_cost_ratio": figures["history_cost_ratio"] <= TARGETS["history_cost_ratio"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 45 seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object (default: indented)")
    args = parser.parse_args(argv)
    result = run_all(QUICK if args.quick else FULL)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

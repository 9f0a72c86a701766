#!/usr/bin/env bash
# Quick start 2: the test suite, against real Dovecot and SMTP servers on 127.0.0.1.
# Sets itself up first (see scripts/setup.sh). Extra arguments go to pytest. Two pytest-xdist workers
# (SUPPORTD_TEST_WORKERS; 0 runs in this process): each test starts its own servers on free ports.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/pytest -n "${SUPPORTD_TEST_WORKERS:-2}" "$@"

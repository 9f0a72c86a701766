#!/usr/bin/env bash
# Quick start 1: supportd's main job on an embedded default: a local Dovecot and SMTP server,
# sample customer mail, the daemon answering it. Sets itself up first (see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/supportd demo "$@"

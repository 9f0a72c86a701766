#!/usr/bin/env bash
# Set up what the quick start needs, once, idempotently:
#   Dovecot (Debian's dovecot-imapd) for the local IMAP server, Python's venv module,
#   and .venv at the repository root with supportd installed in it (editable, with demo and test extras).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; exit 1; fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q "$@" >/dev/null 2>&1 || {
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q "$@" >/dev/null
  }
}

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: supportd needs Python 3.11 or newer (Debian 12, Ubuntu 24.04); found: $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
if [[ ! -x /usr/sbin/dovecot ]]; then
  echo "setup: installing Dovecot (dovecot-imapd) for the local test mail server..." >&2
  apt_install dovecot-imapd
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup: installing Python's venv module..." >&2
  apt_install python3-venv
fi
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.supportd-installed
if [[ ! -f $stamp || setup.cfg -nt $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing supportd and its dependencies into .venv..." >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[demo,test]'
  touch "$stamp"
fi
# Test support (testing/supportd_testing: local Dovecot and SMTP servers, the demo) is not part of
# the supportd wheel; the demo and the tests find it through this path file.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/testing" > "$site/supportd-testing.pth"

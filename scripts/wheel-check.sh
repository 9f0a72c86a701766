#!/usr/bin/env bash
# CI: what a user gets from an ordinary (not editable) install. Builds the wheel, installs it into
# a fresh venv in a temp folder, and runs `supportd init`, `check` and `try` from that venv, so a
# data file left out of the wheel (rules/, replies/, replies/snippets/, the digest's
# supportd/owner/templates/) fails here, not on a server.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/supportd-wheel-XXXXXX)
trap 'rm -rf "$work"' EXIT
started=$SECONDS
rm -rf build  # setuptools reuses build/lib: a module moved away would still ship
.venv/bin/python -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" .
/usr/bin/python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$work"/dist/supportd-*.whl
src=$PWD
cd "$work"  # nothing from the source tree on the path: only what the wheel installed
"$work/venv/bin/supportd" init "$work/etc" >/dev/null
"$work/venv/bin/supportd" check --config "$work/etc/supportd.yaml"
printf 'From: Ada <ada@example.org>\nTo: support@shop.example\nSubject: Broken mug\nMessage-ID: <w1@example.org>\n\nMy mug arrived broken.\n' > mug.eml
out=$("$work/venv/bin/supportd" try --json --config "$work/etc/supportd.yaml" mug.eml)
echo "$out" | "$work/venv/bin/python" -c 'import json,sys; a=json.loads(sys.stdin.read()); assert a["primary_intent"]=="defect" and a["reply"], a'
# test support (local servers that could install Dovecot, the demo) is not part of the daemon
if "$work/venv/bin/python" -c 'import supportd_testing' 2>/dev/null; then
  echo "wheel-check: the wheel holds test support (supportd_testing)" >&2; exit 1
fi
package=$("$work/venv/bin/python" -c 'import supportd, os; print(os.path.dirname(supportd.__file__))')
for template in "$src"/supportd/owner/templates/*; do  # the digest's page (package data, not data_files)
  if [ ! -f "$package/owner/templates/$(basename "$template")" ]; then
    echo "wheel-check: the wheel lacks $template (setup.cfg package_data)" >&2; exit 1
  fi
done
if grep -rnE --include='*.py' "[\"'](apt-get|pip|sudo)[\"']" "$package"; then
  echo "wheel-check: the installed daemon runs a package manager (above)" >&2; exit 1
fi
echo "wheel-check: built, installed (not editable) and ran init, check and try in $((SECONDS - started)) s"

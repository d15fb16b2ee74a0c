#!/usr/bin/env bash
# Screenshot RUN_DIR/report.html with headless Chromium, to check by eye (or in a test) that the report renders.
# Usage: scripts/screenshot_report.sh RUN_DIR OUT.png   (Debian: apt-get install -y chromium)
# WINDOW_SIZE=W,H overrides the 1400,4000 page size (a taller one shows the figures further down).
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 RUN_DIR OUT.png" >&2
  exit 2
fi
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
html=$(realpath "$1")/report.html
out=$(realpath -m "$2")
[[ -f "$html" ]] || { echo "$html does not exist: run \`dfsweep report $1\` first" >&2; exit 2; }
[[ -x "$CHROMIUM" ]] || { echo "$CHROMIUM not found: apt-get install -y chromium" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$out"
# A fresh profile and no background services: nothing leaves the machine, nothing is left behind.
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --window-size="${WINDOW_SIZE:-1400,4000}" --screenshot="$out" "file://$html" >"$profile/log" 2>&1 || true
# Chromium's exit status and stderr are noisy even when it works (dbus, GPU probes): the file is the verdict.
[[ -s "$out" ]] || { cat "$profile/log" >&2; echo "chromium wrote no screenshot to $out" >&2; exit 1; }
echo "$out"

#!/usr/bin/env bash
# Render an HTML report to a PNG with headless Chromium (offline: no network, no profile, no GPU).
#   scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH,HEIGHT]     (default 1200,2400)
# Installs the Debian 'chromium' package if /usr/bin/chromium is missing (needs root).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
html="$1"
png="$2"
size="${3:-1200,2400}"
if [[ ! -f "$html" ]]; then
  echo "error: no such HTML file: $html" >&2
  exit 2
fi
if ! command -v chromium >/dev/null 2>&1; then
  apt-get install -y chromium >&2
fi
abs_html="$(cd "$(dirname "$html")" && pwd)/$(basename "$html")"
mkdir -p "$(dirname "$png")"
abs_png="$(cd "$(dirname "$png")" && pwd)/$(basename "$png")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --screenshot="$abs_png" --window-size="$size" "file://$abs_html" >/dev/null 2>&1
if [[ ! -s "$abs_png" ]]; then
  echo "error: chromium wrote no screenshot to $abs_png" >&2
  exit 1
fi
echo "$abs_png"

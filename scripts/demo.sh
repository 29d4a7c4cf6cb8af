#!/usr/bin/env bash
# Install what is missing, then run the embedded demo (no downloads, no ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/trojanscan demo "$@"

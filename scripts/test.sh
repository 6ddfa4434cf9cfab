#!/usr/bin/env bash
# Tests: set up (idempotent), then pytest. Fast tests by default; `scripts/test.sh -m slow` runs the slow ones.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec python -m pytest "$@"

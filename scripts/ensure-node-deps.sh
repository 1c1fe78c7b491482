#!/usr/bin/env bash
# Installs the npm dependencies (exactly as locked) and builds, when node_modules is
# missing or older than the lock file. `npm ci` runs the `prepare` script (the build).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm run --silent build
fi

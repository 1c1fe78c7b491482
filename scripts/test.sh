#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system packages, npm dependencies, build,
# type-check, lint (zero warnings), then every test (real SoftHSM, SQLite, TLS,
# openssl; PostgreSQL tests read SIGNET_TEST_POSTGRES_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/ensure-node-deps.sh
npm run --silent typecheck
npm run --silent lint
npx vitest run "$@"

#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system packages, npm dependencies, build,
# type-check, lint (zero warnings), then every test (real SoftHSM, SQLite, TLS,
# openssl; the storage suite also runs on the PostgreSQL server at
# SIGNET_TEST_POSTGRES_URL, e.g. postgres://postgres@127.0.0.1:5432/test: without it
# those tests are skipped with a warning, or fail when CI or
# SIGNET_TEST_REQUIRE_POSTGRES=1 is set, as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/ensure-node-deps.sh
npm run --silent typecheck
npm run --silent lint
npx vitest run "$@"

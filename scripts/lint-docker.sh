#!/usr/bin/env bash
# Checks the container and monitoring files, which no development machine can build or
# run (there is no container engine there):
#   docker/Dockerfile                 dockerfile-utils (instruction syntax and arguments)
#   docker/compose.yaml               dclint (the Compose specification's schema, good practice)
#   docker/entrypoint.sh              sh -n
#   docker/prometheus/prometheus.yml  promtool check config
#   docker/prometheus/alerts.yml      promtool check rules, and its unit tests (alerts.test.yml)
# test/docker/lint.test.ts runs this script and checks what these tools cannot
# (pinned base images, non-root user, SoftHSM in the dev target only, start-up order).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=node_modules/.bin
if [ ! -x "$bin/dclint" ] || [ ! -x "$bin/dockerfile-utils" ]; then
  bash scripts/ensure-node-deps.sh
fi

echo "==> docker/Dockerfile"
"$bin/dockerfile-utils" lint docker/Dockerfile

echo "==> docker/compose.yaml"
# Services are listed in start-up order and keys grouped by purpose, so the ordering
# rules are off; every other rule must pass without a warning.
"$bin/dclint" docker/compose.yaml --max-warnings 0 \
  --disable-rule service-keys-order services-alphabetical-order top-level-properties-order

echo "==> docker/entrypoint.sh"
sh -n docker/entrypoint.sh
[ -x docker/entrypoint.sh ] || { echo "docker/entrypoint.sh is not executable" >&2; exit 1; }

echo "==> docker/prometheus"
bash scripts/promtool.sh check config --syntax-only docker/prometheus/prometheus.yml
bash scripts/promtool.sh check rules docker/prometheus/alerts.yml
bash scripts/promtool.sh test rules docker/prometheus/alerts.test.yml

echo "lint-docker: ok"

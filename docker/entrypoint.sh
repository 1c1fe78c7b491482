#!/bin/sh
# Entry point of the Signet image. Commands:
#
#   serve [ARGS…]   signet serve --config "$SIGNET_CONFIG" ARGS… (the default)
#   dev-init        development image only: a `signet init` set-up in $SIGNET_DEV_DIR
#                   (SoftHSM token, TLS, dev OIDC issuer, policy), made once, and the
#                   release and log keys recorded in the storage the config names
#                   (PostgreSQL in docker/compose.yaml), made once
#   anything else   passed to the signet CLI (keys list, log verify, dev-token, …)
#
# `exec` makes node PID 1's direct replacement, so SIGTERM from `docker stop` reaches
# `signet serve`, which drains in-flight requests before exiting (README, Operations).
set -eu

signet() { node /opt/signet/dist/cli/main.js "$@"; }

case "${1:-serve}" in
  serve)
    [ "$#" -gt 0 ] && shift
    exec node /opt/signet/dist/cli/main.js serve --config "${SIGNET_CONFIG:?}" "$@"
    ;;
  dev-init)
    if [ "${SIGNET_PROFILE:-}" != dev ]; then
      echo "entrypoint: dev-init runs in the dev image only (docker build --target dev)" >&2
      exit 64
    fi
    dir="${SIGNET_DEV_DIR:-/var/lib/signet/dev}"
    if [ -f "$dir/signet-init.json" ]; then
      echo "entrypoint: $dir already holds a development set-up; keeping it"
    else
      # The README's development bootstrap, unchanged.
      signet init --dir "$dir" --port 8443
    fi
    # `signet init` records its keys in its own SQLite file; replicas share the storage
    # that $SIGNET_CONFIG names, so the keys are recorded there too (new versions in the
    # same token), once.
    marker="$dir/.keys-in-shared-storage"
    if [ ! -f "$marker" ]; then
      signet keys create --config "${SIGNET_CONFIG:?}" --name demo-release --algorithm ecdsa-p256
      signet keys create --config "${SIGNET_CONFIG:?}" --name signet-log --algorithm ecdsa-p256
      : >"$marker"
    fi
    ;;
  *)
    exec node /opt/signet/dist/cli/main.js "$@"
    ;;
esac

#!/usr/bin/env bash
# Deployment gate: verify a release offline with `signet verify` before deploying it.
# Any failure (a changed or unlisted artifact, an edited manifest, a signature by a key
# from another trust bundle or compromised before the log time, a bad inclusion proof or
# checkpoint, another pipeline identity) stops the deployment with Signet's reason.
#
#   deploy-gate.sh RELEASE_DIR [-- DEPLOY_COMMAND …]
#
# RELEASE_DIR is what the CI examples upload: dist/ (the artifacts) and release/
# (manifest.intoto.json, manifest.intoto.json.sig and its .receipt.json).
#
# Environment:
#   SIGNET_TRUST_BUNDLE      trust bundle file (GET /v1/trust, saved and reviewed once)  [required]
#   SIGNET_REPOSITORY        the repository the release must come from, e.g. example/demo [required]
#   SIGNET_WORKFLOW          the CI workflow that must have signed it (GitHub job_workflow_ref), optional
#   SIGNET_REF               the ref it must have been built from, e.g. 'refs/tags/v*', optional
#
# `signet verify`, as this gate uses it:
#   signet verify --manifest F --signature F [--receipt F] (--dir D | --artifact F …)
#                 --trust-bundle FILE|URL [--trust-bundle-sha256 HEX]
#                 [--repository R] [--workflow W] [--ref GLOB] [--json]
#   Offline unless --trust-bundle is an https URL (then fetched once, and pinned by
#   --trust-bundle-sha256 when given). The receipt defaults to <signature>.receipt.json.
#   Exit status: 0 verified, 1 other error, 2 usage,
#     3 an artifact differs from the manifest,   4 an artifact is not in the manifest (or missing),
#     5 the manifest or signature does not verify, 6 the key does not chain to the trust bundle,
#     7 the key was not valid or not in a good state at the log time (e.g. compromised),
#     8 the inclusion proof does not match the checkpoint, 9 the checkpoint signature is bad,
#     10 the logged identity is not the one required (or cannot be checked: the identity is
#        read from the decision entry the receipt carries; without it the gate refuses).
#   --json prints {"ok": bool, "class": "…", "exitCode": n, "code": "…", "reason": "…", …};
#   without it, one line.
set -euo pipefail

release_dir=${1:?usage: deploy-gate.sh RELEASE_DIR [-- DEPLOY_COMMAND …]}
shift
if [ "${1:-}" = "--" ]; then shift; fi

: "${SIGNET_TRUST_BUNDLE:?set SIGNET_TRUST_BUNDLE to the trust bundle file}"
: "${SIGNET_REPOSITORY:?set SIGNET_REPOSITORY to the repository releases must come from}"

identity=(--repository "$SIGNET_REPOSITORY")
if [ -n "${SIGNET_WORKFLOW:-}" ]; then identity+=(--workflow "$SIGNET_WORKFLOW"); fi
if [ -n "${SIGNET_REF:-}" ]; then identity+=(--ref "$SIGNET_REF"); fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT

status=0
signet verify \
  --manifest "$release_dir/release/manifest.intoto.json" \
  --signature "$release_dir/release/manifest.intoto.json.sig" \
  --dir "$release_dir/dist" \
  --trust-bundle "$SIGNET_TRUST_BUNDLE" \
  "${identity[@]}" \
  --json >"$report" || status=$?

if [ "$status" -ne 0 ]; then
  case "$status" in
    3) what="an artifact was changed" ;;
    4) what="an artifact is not in the signed manifest" ;;
    5) what="the manifest or its signature does not verify" ;;
    6) what="the signing key is not trusted" ;;
    7) what="the signing key was not valid at signing time" ;;
    8 | 9) what="the transparency log proof does not hold" ;;
    10) what="the release was signed for another pipeline identity" ;;
    *) what="verification failed" ;;
  esac
  reason=$(node -e 'try{const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));process.stdout.write(`${r.code??""}: ${r.reason??""}`)}catch{process.stdout.write("(no report)")}' "$report")
  echo "deploy-gate: NOT deploying: $what ($reason); signet verify exited $status" >&2
  exit "$status"
fi

echo "deploy-gate: release verified; deploying" >&2
if [ "$#" -gt 0 ]; then
  exec "$@"
fi

#!/usr/bin/env bash
# Installs the system packages Signet's development set-up and tests use, when they
# are missing: SoftHSM (the development HSM), OpenSC (pkcs11-tool), GnuPG and
# OpenSSL (external verifiers), oathtool (independent TOTP codes for officer tests).
# Uses apt-get as root, or through sudo.
set -euo pipefail

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v oathtool >/dev/null 2>&1 || need+=(oathtool)
command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "signet: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "signet: missing ${need[*]}; run this script as root or install sudo" >&2
  exit 1
fi

echo "signet: installing ${need[*]}" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# create-token.sh DIR LABEL
#
# Creates a SoftHSM2 token that lives entirely under DIR: DIR/tokens holds the token
# files, DIR/softhsm2.conf points at them. Prints the conf path; use it as SOFTHSM2_CONF.
# The system token store (/var/lib/softhsm/tokens) is never read or written: every
# softhsm2-util call gets SOFTHSM2_CONF=DIR/softhsm2.conf.
#
# PINs: SIGNET_HSM_PIN (user) and SIGNET_HSM_SO_PIN (security officer). A PIN not given
# is read from DIR/pin or DIR/so-pin when that file exists (an earlier token in DIR),
# else generated (128 random bits, hex) and written there, mode 0600.
# Installs the softhsm2 package (apt-get; as root, else through sudo) when softhsm2-util
# is missing.
#
# Exit codes: 0 ok, 64 usage, 69 softhsm2 unavailable, 73 token exists, 1 other failure.
set -euo pipefail
umask 077

die() {
  local code=$1
  shift
  printf 'create-token.sh: %s\n' "$*" >&2
  exit "$code"
}

[[ $# -eq 2 ]] || die 64 "usage: create-token.sh DIR LABEL"
dir=$1
label=$2

# CK_TOKEN_INFO.label is 32 bytes, blank-padded (PKCS#11 v2.40 §3.2).
label_bytes=$(printf '%s' "$label" | LC_ALL=C wc -c)
((label_bytes >= 1 && label_bytes <= 32)) || die 64 "LABEL must be 1 to 32 bytes"
[[ $label != *[[:cntrl:]]* && $dir != *[[:cntrl:]]* ]] || die 64 "DIR and LABEL must not contain control characters"

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
template=$script_dir/softhsm2.conf.template
[[ -r $template ]] || die 1 "template not found: $template"

ensure_softhsm() {
  command -v softhsm2-util >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die 69 "softhsm2-util not found and apt-get is unavailable; install SoftHSM 2 (package softhsm2)"
  local -a as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die 69 "softhsm2-util not found; install softhsm2 as root (apt-get install softhsm2)"
    as_root=(sudo)
  fi
  printf 'create-token.sh: softhsm2-util not found; installing softhsm2\n' >&2
  "${as_root[@]}" apt-get update -qq >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >&2
  command -v softhsm2-util >/dev/null 2>&1 || die 69 "softhsm2 was installed but softhsm2-util is still not on PATH"
}

random_pin() {
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

ensure_softhsm

mkdir -p -- "$dir"
dir=$(cd -- "$dir" && pwd -P)
token_dir=$dir/tokens
conf=$dir/softhsm2.conf
case $token_dir in
/var/lib/softhsm | /var/lib/softhsm/*) die 64 "refusing to use the system token store ($token_dir)" ;;
esac
mkdir -p -- "$token_dir"
chmod 700 -- "$dir" "$token_dir"

# The quoted replacement keeps bash 5.2's patsub_replacement from treating '&' specially.
template_text=$(<"$template")
printf '%s\n' "${template_text//@SIGNET_TOKEN_DIR@/"$token_dir"}" >"$conf"
chmod 600 -- "$conf"
export SOFTHSM2_CONF=$conf

# Two tokens with one label would make the service refuse to start (ambiguous label).
existing_labels=$(softhsm2-util --show-slots 2>/dev/null | sed -n 's/^[[:space:]]*Label:[[:space:]]*//p' | sed 's/[[:space:]]*$//')
if grep -qxF -- "$label" <<<"$existing_labels"; then
  die 73 "a token labelled '$label' already exists in $token_dir"
fi

# A PIN file left by an earlier token in DIR is reused rather than overwritten: it may
# be the only copy of that token's PIN.
pin_from() {
  local given=$1 file=$2
  if [[ -n $given ]]; then
    printf '%s' "$given"
  elif [[ -s $file ]]; then
    head -n 1 -- "$file"
  else
    printf '%s\n' "$(random_pin)" >"$file"
    chmod 600 -- "$file"
    cat -- "$file"
  fi
}
pin=$(pin_from "${SIGNET_HSM_PIN:-}" "$dir/pin")
so_pin=$(pin_from "${SIGNET_HSM_SO_PIN:-}" "$dir/so-pin")

# softhsm2-util takes PINs only as arguments or from a terminal prompt; the arguments
# are visible in the process list for the moment the command runs.
softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >/dev/null ||
  die 1 "softhsm2-util could not initialise the token"

printf '%s\n' "$conf"

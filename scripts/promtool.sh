#!/usr/bin/env bash
# promtool.sh ARGS…: runs Prometheus's promtool (rule and metrics checks) with ARGS.
#
# Uses promtool from PATH when there is one. Otherwise takes it out of Debian's
# `prometheus` package without installing the package (which would also install and
# start a Prometheus server): `apt-get download` fetches the .deb and `dpkg-deb -x`
# unpacks it into a cache directory, once per package version.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exec promtool "$@"
fi

cache="${SIGNET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tools}"
found=$(ls -1 "$cache"/prometheus-*/usr/bin/promtool 2>/dev/null | tail -n 1 || true)
if [ -z "$found" ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "promtool.sh: promtool not found and no apt-get here; install Prometheus's promtool" >&2; exit 69; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  download() { (cd "$work" && apt-get download -qq prometheus 2>/dev/null); }
  if ! download; then
    # Empty package lists on a fresh machine: refresh them (as root, or through sudo).
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq; fi
    download || { echo "promtool.sh: cannot download Debian's prometheus package" >&2; exit 69; }
  fi
  deb=$(ls -1 "$work"/prometheus_*.deb)
  version=$(dpkg-deb -f "$deb" Version)
  mkdir -p "$cache"
  dpkg-deb -x "$deb" "$work/unpacked"
  mkdir -p "$cache/prometheus-$version/usr/bin"
  cp "$work/unpacked/usr/bin/promtool" "$cache/prometheus-$version/usr/bin/promtool"
  found="$cache/prometheus-$version/usr/bin/promtool"
  rm -rf "$work"
  trap - EXIT
fi
exec "$found" "$@"

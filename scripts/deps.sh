#!/usr/bin/env bash
# Install the Debian packages tsplice's tests and demo use, only those that
# are missing, so running it again costs nothing. Needs root (or sudo).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have gcc || need+=(gcc)
have make || need+=(make)
have patch || need+=(patch)
have readelf || need+=(binutils)
have objdump || need+=(binutils)

if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "tsplice: installing ${need[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The kernel tests boot the pinned distribution kernel under QEMU.
bash "$(dirname "$0")/kernel-deps.sh"

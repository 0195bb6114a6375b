#!/usr/bin/env bash
# Install what the kernel tests need on a Debian 12 machine; safe to run again.
#  - qemu-system-x86, busybox-static: boot the pinned kernel in a throwaway guest
#    (src/targets/kernel/vm/); KVM is not needed, the guest runs under TCG.
#  - gcc-12 ... dwarves: build kernel objects and livepatch modules the way
#    Debian built the pinned kernel (same gcc 12; flex/bison for Kconfig,
#    libelf-dev for objtool, libssl-dev for the signing tools, dwarves for BTF).
# The kernel packages themselves are not installed: tsplice downloads them with
# `apt-get download` into its cache ($TSPLICE_CACHE or ~/.cache/tsplice).
set -euo pipefail

packages=(
  qemu-system-x86 busybox-static
  gcc-12 make bc bison flex libelf-dev libssl-dev xz-utils dwarves
)

if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done

# The pinned kernel must be downloadable: the package lists must know its version.
pin_file="$(dirname "$0")/../src/targets/kernel/vm/kernel-packages.ts"
abi=$(sed -n "s/^export const KERNEL_PIN.*abi: '\([^']*\)'.*/\1/p" "$pin_file" 2>/dev/null || true)
version=$(sed -n "s/^export const KERNEL_PIN.*version: '\([^']*\)'.*/\1/p" "$pin_file" 2>/dev/null || true)
lists_ok=yes
if [ -n "$abi" ] && [ -n "$version" ]; then
  # Captured first: with pipefail, grep -q closing the pipe early would fail the pipeline.
  known=$(apt-cache madison "linux-image-$abi-cloud-amd64" 2>/dev/null || true)
  if ! printf '%s\n' "$known" | grep -q " $version "; then
    lists_ok=no
  fi
fi

if [ ${#missing[@]} -gt 0 ] || [ "$lists_ok" = no ]; then
  $sudo apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "kernel-deps: installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
known=$(apt-cache madison "linux-image-$abi-cloud-amd64" 2>/dev/null || true)
if [ -n "$abi" ] && [ -n "$version" ] && ! printf '%s\n' "$known" | grep -q " $version "; then
  echo "kernel-deps: linux-image-$abi-cloud-amd64 $version is not in the configured Debian archive;" >&2
  echo "kernel-deps: change KERNEL_PIN in src/targets/kernel/vm/kernel-packages.ts" >&2
  exit 1
fi
echo "kernel-deps: ok"

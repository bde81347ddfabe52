#!/bin/sh
# Best-effort install of the Debian packages some tests use (never fails the build):
#   aarch64 cross check of the sparse kernel: g++-aarch64-linux-gnu, qemu-user-static.
# Tests that need a package that is still missing skip with a reason naming it.
set -u
missing=""
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing="$missing g++-aarch64-linux-gnu"
command -v qemu-aarch64-static >/dev/null 2>&1 || missing="$missing qemu-user-static"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not root or no apt-get; tests needing$missing will skip" >&2
  exit 0
fi
echo "installing Debian packages:$missing" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null 2>&1; } \
  || echo "note: could not install$missing; those tests will skip" >&2
exit 0

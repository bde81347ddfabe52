#!/bin/sh
# Best-effort install of the Debian packages some tests use (never fails the build):
# - aarch64 cross check of the sparse kernel: g++-aarch64-linux-gnu, qemu-user-static;
# - Android demo (JUnit tests of the Java core, APK build without Gradle): junit5,
#   android-sdk-build-tools, aapt, apksigner, zipalign, dexdump, and from Debian bullseye
#   (pinned low, so only what bookworm lacks comes from it) libandroid-23-java, dalvik-exchange.
# Tests whose package is still missing skip with one line naming it.
set -u
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
missing=""
need aarch64-linux-gnu-g++ g++-aarch64-linux-gnu
need qemu-aarch64-static qemu-user-static
need javac default-jdk-headless
[ -f /usr/share/java/junit-platform-console-standalone.jar ] || missing="$missing junit5"
need aapt aapt
need apksigner apksigner
need zipalign zipalign
need dexdump dexdump
need dalvik-exchange dalvik-exchange
[ -f /usr/lib/android-sdk/platforms/android-23/android.jar ] \
  || [ -f /usr/share/java/com.android.android-23.jar ] || missing="$missing libandroid-23-java"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not root or no apt-get; tests needing$missing will skip" >&2
  exit 0
fi
case "$missing" in *libandroid-23-java*|*dalvik-exchange*)
  if [ ! -f /etc/apt/sources.list.d/bullseye.sources ] && grep -qs bookworm /etc/os-release; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/bullseye.sources
    printf 'Package: *\nPin: release n=bullseye\nPin-Priority: 100\n' \
      > /etc/apt/preferences.d/bullseye-low
  fi ;;
esac
echo "installing Debian packages:$missing (once; see tools/system_packages.sh)" >&2
apt-get update -q >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
  >/dev/null 2>&1 || echo "note: could not install all of$missing; those tests will skip" >&2
exit 0

#!/usr/bin/env bash
# The Debian rootfs the boot tests (test/boot/*.test.ts) run systemd-nspawn containers on: bookworm,
# debootstrap's minbase plus systemd, nothing else muster needs (node is bind-mounted from the host:
# bookworm's nodejs is 18, muster needs >= 20.19; perl-base, for the registrar's admin socket, is in
# minbase). It needs a Debian mirror, so .ci/run builds it (the install step), never a test: the
# tests are hermetic after `npm ci`.
#
# Cached as $MUSTER_ROOTFS_CACHE/rootfs-<key> (default /var/cache/muster-test), key = the first 16
# hex digits of this script's SHA-256: any change to it (packages, setup) builds a new one. Built
# in a temporary directory beside it and renamed into place (atomic: a test never sees half a
# rootfs); reused when present. Prints the path. Needs root and debootstrap.
#
#   test/boot/make-rootfs.sh [--print-path]     --print-path: only print where it is (or would be)
#   MUSTER_DEBIAN_MIRROR=http://... to use another mirror (default http://deb.debian.org/debian)
set -euo pipefail

SUITE=bookworm
# systemd: PID 1 and systemctl. Nothing else: the containers use the network namespace the test
# configured (no DHCP, no networkd), and no unit needs D-Bus.
PACKAGES=systemd
MIRROR=${MUSTER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${MUSTER_ROOTFS_CACHE:-/var/cache/muster-test}

key=$(sha256sum "$0" | cut -c1-16)
dest=$CACHE/rootfs-$key
if [ "${1:-}" = --print-path ]; then
  echo "$dest"
  exit 0
fi
if [ -d "$dest" ]; then
  echo "$dest"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "make-rootfs.sh: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "make-rootfs.sh: needs debootstrap" >&2; exit 1; }

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.rootfs-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp/root" "$MIRROR" >"$tmp/log" 2>&1 || {
  tail -n 30 "$tmp/log" >&2
  echo "make-rootfs.sh: debootstrap failed" >&2
  exit 1
}

r=$tmp/root
# debootstrap copied the build machine's host name: a container's comes from nspawn --machine.
rm -f "$r/etc/hostname"
# An empty machine-id: systemd makes one at boot (each container its own).
: >"$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id"
# A persistent journal, so a test reads a unit's log from the container's tree after it stopped.
mkdir -p "$r/var/log/journal"
# No login prompt on the console (nothing types into it).
ln -sf /dev/null "$r/etc/systemd/system/console-getty.service"
# Smaller: no package lists, caches or documentation.
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
  "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/locale/*

# Atomic; another build that finished first wins (same key, same content).
mv -T "$r" "$dest" 2>/dev/null || [ -d "$dest" ]
echo "make-rootfs.sh: built $dest in $(($(date +%s) - start)) s ($(du -sh "$dest" | cut -f1))" >&2
echo "$dest"

#!/usr/bin/env bash
# Print a directory holding the Raspberry Pi device trees (bcm27*/bcm28*.dtb) of Debian
# bookworm's arm64 kernel, the ones the image ships; tests/image/ applies the image's overlays
# to them. They come from build/debian-dtbs/<package>_<version>/, filled either by
# image/build.sh (from the kernel it installed) or by this script, which downloads the kernel
# .deb once (apt-get download with a private arm64 apt state: the host's apt set-up and dpkg
# architectures are not touched) and keeps only the DTBs.
#
#   image/debian-dtbs.sh [--refresh] [--mirror URL]
#
# --refresh asks the mirror for the current kernel even when some are cached. Needs network
# access to the mirror unless a copy is cached: the test suite runs in a private network
# namespace, so fetch before it (this script, or image/build.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
project="$(dirname "$here")"
cache="$project/build/debian-dtbs"
mirror=http://deb.debian.org/debian
suite=bookworm
refresh=no
while [ $# -gt 0 ]; do
    case "$1" in
        --refresh) refresh=yes; shift ;;
        --mirror) mirror="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "debian-dtbs.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
die() { echo "debian-dtbs.sh: $*" >&2; exit 1; }

newest_cached() { find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-*' 2>/dev/null | sort -V | tail -1; }
if [ "$refresh" = no ] && [ -n "$(newest_cached)" ]; then
    newest_cached
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool is missing (a Debian host is needed)"
done
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "$keyring is missing: apt-get install debian-archive-keyring"

state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/archives/partial"
: >"$state/status"
echo "deb [arch=arm64 signed-by=$keyring] $mirror $suite main" >"$state/sources.list"
apt_opts=(
    -o "Dir::State=$state" -o "Dir::State::status=$state/status" -o "Dir::Cache=$state"
    -o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=$state/none"
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64
    # A private, user-owned state: no need to drop to the _apt user.
    -o "APT::Sandbox::User=$(id -un)"
)
# apt-get update exits 0 when it cannot reach the mirror at all: look for the index instead.
apt-get "${apt_opts[@]}" -qq update >"$state/update.log" 2>&1 || true
find "$state/lists" -maxdepth 1 -name '*_Packages*' | grep -q . \
    || die "cannot fetch the arm64 package list from $mirror (no network? the tests' namespace has none): $(grep -m2 -E '^(W|E):' "$state/update.log" | tr '\n' ' ')"
# linux-image-arm64 is a metapackage: the DTBs are in the versioned package it depends on.
package="$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 \
    | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')"
[ -n "$package" ] || die "cannot tell which kernel package linux-image-arm64 depends on"
version="$(apt-cache "${apt_opts[@]}" show --no-all-versions "$package" | awk '$1 == "Version:" { print $2; exit }')"
dest="$cache/${package}_$version"
if [ -d "$dest" ]; then
    echo "$dest"
    exit 0
fi
(cd "$state/archives" && apt-get "${apt_opts[@]}" -qq download "$package" >"$state/download.log" 2>&1) \
    || die "apt-get download $package failed: $(tail -3 "$state/download.log" | tr '\n' ' ')"
deb="$(find "$state/archives" -maxdepth 1 -name '*.deb' | head -1)"
rm -rf "$dest.partial"
mkdir -p "$dest.partial"
dpkg-deb --fsys-tarfile "$deb" \
    | tar -x -C "$dest.partial" --wildcards './usr/lib/linux-image-*/broadcom/bcm2[78]*.dtb'
find "$dest.partial/usr" -name '*.dtb' -exec mv -t "$dest.partial" {} +
rm -rf "$dest.partial/usr"
ls "$dest.partial"/*.dtb >/dev/null 2>&1 || die "$package $version has no Raspberry Pi DTBs"
echo "$package $version from $mirror $suite, $(basename "$deb") sha256 $(sha256sum "$deb" | cut -d' ' -f1)" \
    >"$dest.partial/SOURCE"
mv "$dest.partial" "$dest"
echo "$dest"

#!/usr/bin/env bash
# Build the image twice from this tree and check that the two are identical, byte for byte:
# same SOURCE_DATE_EPOCH (the last commit's), the same cached base root file system, mirror
# state and PyPI pins (image/constraints.txt). On a difference it says in which partition, and
# which files differ by the builds' manifests, and exits 1. Run as root; see image/README.md.
#
#   nice -n 10 image/check-reproducible.sh [image/build.sh options]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
project="$(dirname "$here")"
out="$project/build/reproducible"
die() { echo "check-reproducible.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (image/build.sh needs it)"
rm -rf "$out"
mkdir -p "$out"

t0=$(date +%s)
for run in 1 2; do
    log="$out/build-$run.log"
    "$here/build.sh" "$@" >"$log" 2>&1 || { tail -20 "$log"; die "build $run failed (log: $log)"; }
    image="$(sed -n 's/^image: *\([^ ]*\) .*/\1/p' "$log")"
    [ -f "$image" ] || die "build $run: no image named in $log"
    cp --sparse=always "$image" "$out/image-$run.img"
    cp "${image%.img}.manifest" "$out/manifest-$run"
    echo "build $run: $(sha256sum <"$out/image-$run.img" | cut -c1-64) ($(( $(date +%s) - t0 ))s so far)"
done

if cmp -s "$out/image-1.img" "$out/image-2.img"; then
    echo "REPRODUCIBLE: both builds gave $(basename "$image"), sha256 $(sha256sum <"$out/image-1.img" | cut -c1-64)"
    rm -f "$out"/image-*.img
    exit 0
fi
echo "NOT REPRODUCIBLE: the two images differ"
first="$(cmp "$out/image-1.img" "$out/image-2.img" | sed -n 's/.* byte \([0-9]*\),.*/\1/p' || true)"
while read -r start size; do
    if [ "$first" -gt $(( start * 512 )) ] && [ "$first" -le $(( (start + size) * 512 )) ]; then
        echo "first difference at byte $first: in the partition that starts at sector $start"
    fi
done < <(sfdisk --dump "$out/image-1.img" | sed -n 's/.*start= *\([0-9]*\), size= *\([0-9]*\).*/\1 \2/p')
if diff "$out/manifest-1" "$out/manifest-2" >"$out/manifest.diff"; then
    echo "the file trees are identical (modes, owners, mtimes, contents): the file systems differ"
else
    echo "files that differ (first 40 lines of $out/manifest.diff):"
    head -40 "$out/manifest.diff"
fi
exit 1

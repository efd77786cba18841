#!/usr/bin/env bash
# Build a flashable arm64 Raspberry Pi (3/4/400/Zero 2 W/CM4) image with buttons-agent:
# Debian bookworm arm64 (mmdebstrap under qemu-user-static), Debian's raspi-firmware and
# linux-image-arm64 on a FAT boot partition, the agent installed from this project's wheel and
# enabled. Run as root on a Debian host; uses Debian packages only. See image/README.md.
#
#   nice -n 10 image/build.sh [--out DIR] [--size MiB] [--xz] [--fresh] [--mirror URL]
#                             [--security-mirror URL]
#
# The image: build/buttons-agent-<version>-arm64.img (+ .xz with --xz). Work files, the rootfs
# cache and vmlinuz / initrd.img for the QEMU smoke test (image/smoke-test.sh) go in DIR
# (default build/image).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
project="$(dirname "$here")"
out="$project/build/image"
size_mib=2048
boot_mib=256
compress=no
fresh=no
mirror=http://deb.debian.org/debian
security_mirror=http://deb.debian.org/debian-security
suite=bookworm
hostname=buttons-tv
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --size) size_mib="$2"; shift 2 ;;
        --xz) compress=yes; shift ;;
        --fresh) fresh=yes; shift ;;
        --mirror) mirror="$2"; shift 2 ;;
        --security-mirror) security_mirror="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

die() { echo "build.sh: $*" >&2; exit 1; }
# Reproducible: the same tree, mirror state and PyPI pins give the same image, byte for byte.
# Every time stamp the build makes is this one (the last commit's, unless given): the
# wheel's, the packages' maintainer scripts' (user database, initramfs), pip's byte code
# (hash-checked .pyc instead of time-stamped), every file newer than it, and the file systems'.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH="$(git -C "$project" log -1 --format=%ct 2>/dev/null)" \
        || die "not a git checkout: set SOURCE_DATE_EPOCH (seconds since 1970) for the image's time stamps"
fi
export SOURCE_DATE_EPOCH
# fixed_uuid NAME: a UUID of its own for each file system, the same in every build of a version.
fixed_uuid() {
    sha256sum <<<"buttons-agent $version $1 $SOURCE_DATE_EPOCH" \
        | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/'
}
t0=$(date +%s)
last=$t0
step() {
    local now; now=$(date +%s)
    echo "== [+$(( now - last ))s, total $(( now - t0 ))s] $*"
    last=$now
}

# -- host requirements -----------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, chroot, mounts)"
need() { command -v "$1" >/dev/null || die "$1 is missing: apt-get install $2"; }
need mmdebstrap mmdebstrap
need mkfs.vfat dosfstools
need mcopy mtools
need mkfs.ext4 e2fsprogs
need sfdisk fdisk
need python3 python3
need dtc device-tree-compiler
need fdtoverlay device-tree-compiler
[ "$compress" = no ] || need xz xz-utils
if [ "$(dpkg --print-architecture)" != arm64 ]; then
    [ -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || [ -x /usr/bin/qemu-aarch64-static ] \
        || die "qemu-user-static is missing: apt-get install qemu-user-static binfmt-support"
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc (needed to run arm64 programs)"
    fi
    if ! grep -qs enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        update-binfmts --enable qemu-aarch64 || die "cannot enable the qemu-aarch64 binfmt handler"
    fi
fi

work="$out/work"
rootfs="$work/rootfs"
mkdir -p "$out"
rm -rf "$work"
mkdir -p "$work"

# -- device-tree overlays (image/overlays/*.dts) --------------------------------------------
# Compiled first so that a mistake in a source stops the build at once. -@ keeps their labels
# (`gpio`) as fixups for the firmware to resolve against the DTB's __symbols__.
mkdir -p "$work/overlays"
for source in "$here"/overlays/*.dts; do
    dtc -@ -I dts -O dtb -o "$work/overlays/$(basename "$source" .dts).dtbo" "$source" \
        || die "dtc could not compile $source"
done

# -- the project's wheel ---------------------------------------------------------------------
step "wheel"
rm -rf "$work/dist"
python3 -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$project" \
    || die "building the wheel failed"
wheel="$(ls "$work"/dist/buttons_agent-*.whl)"
version="$(basename "$wheel" | cut -d- -f2)"
# The image itself lands next to the work directory: build/buttons-agent-<version>-arm64.img.
image="$(dirname "$out")/buttons-agent-$version-arm64.img"

# -- root filesystem -------------------------------------------------------------------------
# The release with its stable updates and security updates, as on any Debian system: the image
# is built with them and the Pi keeps getting them (these lines are its sources.list).
sources=(
    "deb $mirror $suite main non-free-firmware"
    "deb $mirror $suite-updates main non-free-firmware"
    "deb $security_mirror $suite-security main non-free-firmware"
)
packages=(
    systemd systemd-sysv systemd-timesyncd systemd-resolved udev dbus kmod
    iproute2 netbase ca-certificates wpasupplicant
    python3 python3-venv lirc initramfs-tools dosfstools e2fsprogs
    firmware-brcm80211
)
# The base system is the slow step (~6 min of maintainer scripts under emulation): cache it,
# keyed by everything that goes into it. --fresh ignores the cache.
key="$(echo "$suite ${sources[*]} ${packages[*]}" | sha256sum | cut -c1-16)"
cached="$out/cache/rootfs-$suite-arm64-$key.tar"
if [ "$fresh" = no ] && [ -f "$cached" ]; then
    step "base rootfs from cache $(basename "$cached")"
    mkdir -p "$rootfs"
    tar -C "$rootfs" -xf "$cached"
else
    step "mmdebstrap $suite arm64 (maintainer scripts run under emulation)"
    mmdebstrap --quiet --arch=arm64 --variant=apt --components=main,non-free-firmware \
        --include="$(IFS=,; echo "${packages[*]}")" "$suite" "$rootfs" "${sources[@]}" \
        || die "mmdebstrap failed (are $mirror and $security_mirror reachable? packages: ${packages[*]})"
    mkdir -p "$out/cache"
    tar -C "$rootfs" -cf "$cached.partial" . && mv "$cached.partial" "$cached"
fi

mounted=()
cleanup() {
    local index
    for (( index=${#mounted[@]}-1; index>=0; index-- )); do umount -l "${mounted[index]}" || true; done
}
trap cleanup EXIT
for fs in proc sys dev; do
    case $fs in
        proc) mount -t proc proc "$rootfs/proc" ;;
        sys) mount -t sysfs sysfs "$rootfs/sys" ;;
        dev) mount --bind /dev "$rootfs/dev" ;;
    esac
    mounted+=("$rootfs/$fs")
done
in_root() { chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
# logged NAME WHAT COMMAND...: run COMMAND with its output in $work/NAME.log; on failure show
# the log's end and stop with "WHAT failed".
logged() {
    local log="$work/$1.log" what="$2"
    shift 2
    "$@" >"$log" 2>&1 || { tail -30 "$log"; die "$what failed (log: $log)"; }
}
rm -f "$rootfs/etc/resolv.conf"  # systemd-resolved's stub link: dangling in a chroot
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"  # apt and pip inside the chroot

# -- kernel, initramfs, Raspberry Pi firmware ------------------------------------------------
step "kernel + raspi-firmware (small initramfs: MODULES=list)"
# The initramfs build under emulation is the slow part: ~16 min with MODULES=most, under a
# minute with the modules an SD-card (Pi) or virtio (QEMU smoke test) root needs. (The
# kernel's postinst builds one regardless of update_initramfs; the -u below is the final one,
# after raspi-firmware is configured, and its hook copies everything to /boot/firmware.)
sed -i 's/^MODULES=.*/MODULES=list/' "$rootfs/etc/initramfs-tools/initramfs.conf"
cat >>"$rootfs/etc/initramfs-tools/modules" <<'EOF'
# buttons-agent image: root on the Pi's SD card, or on virtio under QEMU.
mmc_block
sdhci_iproc
bcm2835
sdhci
reset_raspberrypi
virtio_pci
virtio_mmio
virtio_blk
ext4
crc32c_generic
vfat
nls_cp437
nls_ascii
EOF
sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$rootfs/etc/initramfs-tools/update-initramfs.conf"
cat >"$rootfs/etc/default/raspi-firmware" <<'EOF'
# Read by raspi-firmware's hooks when they write /boot/firmware/{cmdline,config}.txt.
ROOTPART=LABEL=buttons-root
CONSOLES="serial0,115200 tty1"
KERNEL_ARCH=arm64
EOF
# Appended to config.txt by raspi-firmware's hook, which rewrites config.txt on every kernel or
# initramfs update: this file, not config.txt, is where a change lasts.
cat >"$rootfs/etc/default/raspi-firmware-custom" <<'EOF'
# buttons-agent: IR receiver module's output on GPIO18 (overlays/buttons-ir-receiver.dtbo,
# the kernel's gpio-ir-recv) and IR LED on GPIO17 (overlays/buttons-ir-transmitter.dtbo,
# gpio-ir-tx built by DKMS). Other pins: [ir] in the boot partition's buttons-agent.toml;
# buttons-agent-ir-pins.service rewrites these two lines (and config.txt's) at boot.
dtoverlay=buttons-ir-receiver
dtoverlay=buttons-ir-transmitter
EOF
logged apt-update "apt-get update in the rootfs" in_root apt-get update -q
# --force-confold: keep our /etc/default/raspi-firmware (a conffile we wrote first).
kernel_packages=(linux-image-arm64 raspi-firmware device-tree-compiler cloud-guest-utils)
logged kernel-install "installing ${kernel_packages[*]}" \
    in_root apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${kernel_packages[@]}"
sed -i 's/^update_initramfs=.*/update_initramfs=yes/' "$rootfs/etc/initramfs-tools/update-initramfs.conf"
# Debian's DTBs have no __symbols__, without which the firmware can apply no overlay: the hook
# adds the one our overlays use. Installed only now that fdtput and the DTBs are there; from
# here on it runs after raspi-firmware's own z50 hooks, which copy fresh DTBs each time.
for hooks in kernel/postinst.d initramfs/post-update.d; do
    install -D -m 0755 "$here/buttons-dtb-symbols" "$rootfs/etc/$hooks/z60-buttons-dtb-symbols"
done
kversion="$(basename "$(ls -d "$rootfs"/lib/modules/*)")"
# shellcheck disable=SC2016  # ${Version} is dpkg-query's field, not the shell's
kernel_package_version="$(in_root dpkg-query -W -f '${Version}' "linux-image-$kversion")"
step "initramfs for $kversion (raspi-firmware copies kernel, initrd, DTBs to /boot/firmware)"
logged initramfs "update-initramfs" in_root update-initramfs -u -k "$kversion"
for file in config.txt cmdline.txt start4.elf bootcode.bin bcm2711-rpi-4-b.dtb bcm2837-rpi-3-b-plus.dtb; do
    [ -e "$rootfs/boot/firmware/$file" ] || die "raspi-firmware did not produce /boot/firmware/$file"
done
install -d "$rootfs/boot/firmware/overlays"
install -m 0644 "$work"/overlays/*.dtbo "$rootfs/boot/firmware/overlays/"
# What the firmware will do at boot, done here on every DTB shipped (after raspi-firmware's
# copy and our symbols hook): each overlay applies and its node is on the GPIO controller.
for overlay_pin in buttons-ir-receiver:18:1 buttons-ir-transmitter:17:0; do
    IFS=: read -r overlay pin flags <<<"$overlay_pin"
    grep -qx "dtoverlay=$overlay" "$rootfs/boot/firmware/config.txt" \
        || die "config.txt lacks dtoverlay=$overlay"
    for dtb in "$rootfs"/boot/firmware/bcm2711-*.dtb "$rootfs"/boot/firmware/bcm2837-*.dtb; do
        fdtoverlay -i "$dtb" -o "$work/check.dtb" "$rootfs/boot/firmware/overlays/$overlay.dtbo" \
            || die "the $overlay overlay does not apply to $(basename "$dtb") (see $work/initramfs.log)"
        [ "$(fdtget -t u "$work/check.dtb" "/$overlay" gpios)" \
            = "$(fdtget -t u "$work/check.dtb" /soc/gpio@7e200000 phandle) $pin $flags" ] \
            || die "$(basename "$dtb") + $overlay.dtbo: not on GPIO$pin"
    done
done
rm -f "$work/check.dtb"
# tests/image/ checks the overlays against these DTBs: keep a copy (image/debian-dtbs.sh).
dtbs="$project/build/debian-dtbs/linux-image-${kversion}_$kernel_package_version"
if [ ! -d "$dtbs" ]; then
    mkdir -p "$dtbs.partial"
    cp "$rootfs/usr/lib/linux-image-$kversion/broadcom"/bcm2[78]*.dtb "$dtbs.partial/"
    echo "linux-image-$kversion from image/build.sh's root file system (${sources[*]})" >"$dtbs.partial/SOURCE"
    rm -rf "$dtbs" && mv "$dtbs.partial" "$dtbs"
fi
find "$rootfs/lib/modules/$kversion" -name 'gpio-ir-recv.ko*' | grep -q . \
    || die "$kversion has no gpio-ir-recv module: the IR receiver overlay would have no driver"

# -- IR transmitter driver -------------------------------------------------------------------
# Debian builds its kernel without gpio-ir-tx (CONFIG_IR_GPIO_TX is not set), so an IR LED on a
# GPIO would have no driver. DKMS builds the kernel's own driver for every kernel installed (a
# kernel upgraded on the Pi gets it again; gcc and the headers stay in the image for that),
# its source taken from Debian's linux-source package (the patched tree; apt checks it against
# the signed archive): this kernel's version where the mirror's index has it, else the one it
# has (the driver is the same across a stable series; the build against this kernel's headers
# is the check).
kernel_series="$(cut -d. -f1,2 <<<"$kversion")"
step "gpio-ir-tx from linux-source-$kernel_series, built by DKMS for $kversion"
driver_source="$out/cache/gpio-ir-tx-for-$kernel_package_version.c"
if [ ! -f "$driver_source" ]; then
    install -d -m 0777 "$rootfs/tmp/kernel-source"  # apt downloads as its own user, _apt
    logged kernel-source "fetching linux-source-$kernel_series (Debian's source of the kernel)" \
        in_root sh -c "cd /tmp/kernel-source && { apt-get download -q linux-source-$kernel_series=$kernel_package_version \
            || apt-get download -q linux-source-$kernel_series; }"
    source_deb="$(ls "$rootfs"/tmp/kernel-source/linux-source-*.deb)"
    mkdir -p "$work/kernel-source" "$out/cache"
    dpkg-deb --fsys-tarfile "$source_deb" | tar -xO "./usr/src/linux-source-$kernel_series.tar.xz" \
        | tar -xJ -C "$work/kernel-source" --wildcards '*/drivers/media/rc/gpio-ir-tx.c' \
        || die "$(basename "$source_deb") has no drivers/media/rc/gpio-ir-tx.c"
    cp "$work"/kernel-source/*/drivers/media/rc/gpio-ir-tx.c "$driver_source.partial"
    dpkg-deb -f "$source_deb" Version >"$driver_source.version"
    mv "$driver_source.partial" "$driver_source"
    rm -rf "$rootfs/tmp/kernel-source" "$work/kernel-source"
fi
driver_version="$(cat "$driver_source.version")"
echo "gpio-ir-tx source: linux-source-$kernel_series $driver_version (kernel package $kernel_package_version)"
logged dkms-install "installing dkms linux-headers-$kversion" \
    in_root apt-get install -y -q --no-install-recommends dkms "linux-headers-$kversion"
dkms_source="$rootfs/usr/src/buttons-gpio-ir-tx-$driver_version"
install -d "$dkms_source"
install -m 0644 "$driver_source" "$dkms_source/gpio-ir-tx.c"
install -m 0644 "$here/gpio-ir-tx/Makefile" "$dkms_source/Makefile"
sed "s/@VERSION@/$driver_version/" "$here/gpio-ir-tx/dkms.conf" >"$dkms_source/dkms.conf"
# Unsigned in the image: DKMS would sign with a key it generates on the spot, one private key
# shared by every card flashed (and a different module in every build). No Pi checks module
# signatures; DKMS on the device signs what it rebuilds with a key of its own.
no_signing="$rootfs/etc/dkms/framework.conf.d/buttons-image-build.conf"
echo 'sign_file=/nonexistent/unsigned-in-the-image' >"$no_signing"
logged dkms-build "DKMS building gpio-ir-tx for $kversion" \
    in_root dkms install -m buttons-gpio-ir-tx -v "$driver_version" -k "$kversion"
rm "$no_signing"
[ ! -e "$rootfs/var/lib/dkms/mok.key" ] || die "DKMS made a signing key in the image"
grep -q 'of:N\*T\*Cgpio-ir-tx gpio_ir_tx' "$rootfs/lib/modules/$kversion/modules.alias" \
    || die "gpio-ir-tx was built but is not in $kversion's modules.alias: udev would not load it"

# -- system configuration --------------------------------------------------------------------
step "system configuration"
echo "$hostname" >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$hostname" >"$rootfs/etc/hosts"
cat >"$rootfs/etc/fstab" <<'EOF'
LABEL=buttons-root  /               ext4  defaults,noatime              0 1
LABEL=BUTTONSBOOT   /boot/firmware  vfat  defaults,umask=0022,nofail    0 2
EOF
mkdir -p "$rootfs/etc/systemd/network"
cat >"$rootfs/etc/systemd/network/20-wired.network" <<'EOF'
[Match]
Name=en* eth*
[Network]
DHCP=yes
MulticastDNS=no
LinkLocalAddressing=yes
EOF
# Wi-Fi: DHCP on wlan*, wpa_supplicant started when wlan0 appears (no wait where there is none),
# its configuration written at boot from the boot partition's [wifi] (buttons-agent-wifi.service).
cat >"$rootfs/etc/systemd/network/25-wireless.network" <<'EOF'
[Match]
Name=wl*
[Network]
DHCP=yes
MulticastDNS=no
LinkLocalAddressing=yes
EOF
mkdir -p "$rootfs/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
ln -sf /lib/systemd/system/wpa_supplicant@.service \
    "$rootfs/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants/wpa_supplicant@wlan0.service"
in_root systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1
# lircd sends through /dev/lirc-tx; the GPIO receiver (gpio-ir-recv) is /dev/lirc-rx.
cat >"$rootfs/etc/lirc/lirc_options.conf" <<'EOF'
# buttons-agent image: transmit through /dev/lirc-tx (see image/README.md).
[lircd]
nodaemon        = False
driver          = default
device          = /dev/lirc-tx
output          = /var/run/lirc/lircd
pidfile         = /var/run/lirc/lircd.pid
plugindir       = /usr/lib/aarch64-linux-gnu/lirc/plugins
permission      = 666
allow-simulate  = No
repeat-max      = 600
EOF
cat >"$rootfs/etc/udev/rules.d/61-buttons-agent-lirc.rules" <<'EOF'
# Name the LIRC devices by driver, not by the unstable N of /dev/lircN. Sending: the IR LED on
# a GPIO (gpio-ir-tx, built by DKMS) or a USB IR transceiver (mceusb).
SUBSYSTEM=="lirc", DRIVERS=="gpio-ir-tx", SYMLINK+="lirc-tx"
SUBSYSTEM=="lirc", DRIVERS=="mceusb", SYMLINK+="lirc-tx"
SUBSYSTEM=="lirc", DRIVERS=="gpio_ir_recv", SYMLINK+="lirc-rx"
EOF

# -- the agent -------------------------------------------------------------------------------
# pytest + pytest-trio: the on-device selftest (the wheel's `selftest` extra).
extras=("pytest>=8" "pytest-trio>=0.8")
step "buttons-agent from $(basename "$wheel") (+ ${extras[*]})"
extra_args=()
for extra in "${extras[@]}"; do extra_args+=(--extra "$extra"); done
# pip in the chroot trusts what the host trusts (e.g. a TLS-inspecting proxy's CA); the
# bundle is only in /tmp for this step and is not shipped.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/tmp/host-ca-certificates.crt"
# (pip's requests also honours REQUESTS_CA_BUNDLE / SSL_CERT_FILE from the environment,
# which would point at the chroot's own bundle: set all three.)
ca=/tmp/host-ca-certificates.crt
logged agent-install "installing the agent" env PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca SSL_CERT_FILE=$ca \
    "$project/systemd/install.sh" --root "$rootfs" --wheel "$wheel" "${extra_args[@]}" \
    --constraints "$here/constraints.txt"
install -m 0644 "$here/buttons-agent-selftest.service" \
    "$rootfs/etc/systemd/system/buttons-agent-selftest.service"
install -m 0644 "$here/buttons-agent-wifi.service" "$here/buttons-agent-ir-pins.service" \
    "$rootfs/etc/systemd/system/"
install -m 0755 "$here/buttons-grow-root" "$rootfs/usr/local/sbin/buttons-grow-root"
install -m 0644 "$here/buttons-grow-root.service" "$rootfs/etc/systemd/system/"
in_root systemctl enable buttons-agent-wifi.service buttons-agent-ir-pins.service \
    buttons-grow-root.service >/dev/null 2>&1
install -m 0644 "$here/buttons-agent.toml" "$rootfs/boot/firmware/buttons-agent.toml"

step "clean up"
in_root apt-get clean
rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/tmp/"* "$rootfs/root/.cache"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
: >"$rootfs/etc/machine-id"  # generated on first boot
cp "$rootfs/boot/vmlinuz-$kversion" "$out/vmlinuz"
cp "$rootfs/boot/initrd.img-$kversion" "$out/initrd.img"
# Unmounted first, so that what is under /dev, /proc and /sys gets clamped below too.
cleanup
mounted=()
# What differs in every build and nothing needs: the build's logs and caches.
rm -rf "$rootfs"/var/log/dpkg.log "$rootfs"/var/log/alternatives.log "$rootfs"/var/log/apt/* \
    "$rootfs"/var/cache/ldconfig/aux-cache "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/lib/dkms/*/*/*/*/log
# Nothing in the image newer than SOURCE_DATE_EPOCH.
find "$rootfs" -xdev -newermt "@$SOURCE_DATE_EPOCH" -print0 \
    | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"
# Every file with its mode, owner, mtime and content hash: two builds compare by it
# (image/check-reproducible.sh).
manifest="${image%.img}.manifest"
(
    cd "$rootfs"
    find . -xdev \( -type l -printf '%M %U:%G %T@ %p -> %l\n' \) -o -printf '%M %U:%G %T@ %p\n' \
        | LC_ALL=C sort -k4
    find . -xdev -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
) >"$manifest"

# -- partitions as files, then the image (no loop devices, no device mapper) ----------------
step "assemble ${size_mib} MiB image"
root_mib=$(( size_mib - boot_mib - 1 ))
boot_img="$work/boot.vfat"
root_img="$work/root.ext4"
rm -f "$boot_img" "$root_img"
# --invariant and -i: no time or random number in the FAT; mcopy -m keeps the (clamped) mtimes.
mkfs.vfat --invariant -i "$(fixed_uuid boot | cut -c1-8)" -C -F 32 -n BUTTONSBOOT "$boot_img" \
    $(( boot_mib * 1024 )) >/dev/null
(cd "$rootfs/boot/firmware" && MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$boot_img" ./* ::/)
mv "$rootfs/boot/firmware" "$work/firmware"
mkdir -p "$rootfs/boot/firmware"
touch --date="@$SOURCE_DATE_EPOCH" "$rootfs/boot" "$rootfs/boot/firmware"
used_mib=$(du -sm "$rootfs" | cut -f1)
[ "$used_mib" -lt $(( root_mib * 9 / 10 )) ] || die "rootfs ($used_mib MiB) does not fit: raise --size"
# A fixed UUID and directory hash seed, and the superblock's times from E2FSPROGS_FAKE_TIME;
# mkfs.ext4 -d copies each file's ctime and atime, which only ext4-set-times can fix.
root_uuid="$(fixed_uuid root)"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L buttons-root -U "$root_uuid" \
    -E "hash_seed=$root_uuid" -d "$rootfs" "$root_img" "${root_mib}M"
"$here/ext4-set-times" "$root_img" "$SOURCE_DATE_EPOCH"
rm -f "$image" "$image.xz"  # never leave a stale .xz beside a new image
truncate -s "${size_mib}M" "$image"
sfdisk --quiet "$image" <<EOF
label: dos
label-id: 0x$(fixed_uuid disk | cut -c1-8)
1M,${boot_mib}M,c,*
$(( boot_mib + 1 ))M,,83
EOF
dd if="$boot_img" of="$image" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$root_img" of="$image" bs=1M seek=$(( boot_mib + 1 )) conv=notrunc,sparse status=none
rm -f "$boot_img" "$root_img"
mv "$work/firmware"/* "$rootfs/boot/firmware/" && rmdir "$work/firmware"

if [ "$compress" = yes ]; then
    step "xz"
    xz -T0 -6 -k -f "$image"
fi
step "done"
echo "image:      $image ($(du -h --apparent-size "$image" | cut -f1) apparent, $(du -h "$image" | cut -f1) on disk)"
[ "$compress" = no ] || echo "compressed: $image.xz ($(du -h "$image.xz" | cut -f1))"
echo "rootfs:     ${used_mib} MiB; kernel $kversion"
echo "total time: $(( $(date +%s) - t0 ))s"

#!/bin/sh
# Builds the lab's QEMU guest from Debian packages only: Debian's cloud kernel
# and busybox-static, fetched with apt-get download and unpacked with dpkg-deb
# into a temporary directory (never installed on the host), plus the lab's probe
# responder built from this repository and lab/guest/init.
#
# Output, in $WNV_GUEST_DIR (default /var/cache/wnv/guest): vmlinuz,
# initramfs.cpio.gz and stamp. The stamp records the package versions and a
# hash of everything that goes into the image; when it matches, nothing is
# rebuilt. Prints one line: the directory on success, the reason on failure.
set -eu

GO=${GO:-go}
OUT=${WNV_GUEST_DIR:-/var/cache/wnv/guest}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# What the guest's virtio NIC needs; loaded with their dependencies unless
# the kernel has them built in.
MODULES="virtio_pci virtio_net"

TMP=
cleanup() { [ -z "$TMP" ] || rm -rf "$TMP"; }
trap cleanup EXIT
die() {
	echo "make guest: $*" >&2
	exit 1
}
# run LOG-NAME CMD...: runs quietly; on failure the caller's die can quote the
# last line of the command's output.
run() {
	log=$TMP/$1.log
	shift
	"$@" >"$log" 2>&1
}
lastline() { tail -n 1 "$TMP/$1.log" 2>/dev/null | tr -d '\r'; }

for tool in apt-get apt-cache dpkg-deb cpio gzip sha256sum; do
	command -v $tool >/dev/null 2>&1 || die "$tool is missing (run make deps)"
done
command -v "$GO" >/dev/null 2>&1 || die "Go ($GO) is missing: set GO or install Go"

TMP=$(mktemp -d /tmp/wnv-guest.XXXXXX)
export DEBIAN_FRONTEND=noninteractive

# Candidate version of a package, empty when apt knows none.
candidate() {
	apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2 }'
}
# The versioned kernel package the metapackage points at.
kernel_pkg() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9].*-cloud-amd64$/ { print $2; exit }'
}
resolve() {
	KPKG=$(kernel_pkg)
	KVER=
	BVER=$(candidate busybox-static)
	if [ -n "$KPKG" ]; then KVER=$(candidate "$KPKG"); fi
}
updated=
update() {
	[ -z "$updated" ] || return 1
	updated=1
	run apt-update apt-get update -qq || die "apt-get update failed: $(lastline apt-update)"
}
resolve
if [ -z "$KVER" ] || [ -z "$BVER" ]; then
	update || true
	resolve
fi
{ [ -n "$KPKG" ] && [ -n "$KVER" ]; } || die "no candidate for linux-image-cloud-amd64 in apt's lists (is the amd64 main archive configured?)"
[ -n "$BVER" ] || die "no candidate for busybox-static in apt's lists"

# Everything that shapes the image, hashed: a change to any of it rebuilds.
inputs="$HERE/build.sh $HERE/init $HERE/probe/main.go $REPO/go.mod"
for f in "$REPO"/lab/probe/*.go; do
	case $f in *_test.go) ;; *) inputs="$inputs $f" ;; esac
done
# shellcheck disable=SC2086 # the repository's paths have no spaces
recipe=$(cat $inputs | sha256sum | cut -d' ' -f1)
gover=$("$GO" env GOVERSION 2>/dev/null || echo unknown)
stamp="$KPKG=$KVER busybox-static=$BVER go=$gover recipe=$recipe"
if [ -f "$OUT/stamp" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initramfs.cpio.gz" ] &&
	[ "$(cat "$OUT/stamp")" = "$stamp" ]; then
	echo "guest image up to date: $OUT"
	exit 0
fi

{ mkdir -p "$OUT" 2>/dev/null && [ -w "$OUT" ]; } || die "cannot write to $OUT (run as root, or set WNV_GUEST_DIR)"

# apt-get download writes to the working directory as the _apt user.
mkdir -p "$TMP/deb" "$TMP/pkg" "$TMP/root"
chmod 755 "$TMP" "$TMP/deb"
chown _apt "$TMP/deb" 2>/dev/null || true
download() {
	(cd "$TMP/deb" && apt-get download -qq "$KPKG=$KVER" "busybox-static=$BVER")
}
if ! run download download; then
	update || die "apt-get download $KPKG busybox-static failed: $(lastline download)"
	resolve
	run download download || die "apt-get download $KPKG busybox-static failed: $(lastline download)"
fi
for deb in "$TMP"/deb/*.deb; do
	run unpack dpkg-deb -x "$deb" "$TMP/pkg" || die "dpkg-deb -x $(basename "$deb") failed: $(lastline unpack)"
done

R=$TMP/root
vmlinuz=$(ls "$TMP"/pkg/boot/vmlinuz-* 2>/dev/null | head -n 1)
[ -n "$vmlinuz" ] || die "$KPKG has no /boot/vmlinuz-*"
kdir=$(ls -d "$TMP"/pkg/lib/modules/* 2>/dev/null | head -n 1)
[ -n "$kdir" ] || die "$KPKG has no /lib/modules"
bb=$TMP/pkg/bin/busybox
[ -x "$bb" ] || die "busybox-static has no /bin/busybox"

# Busybox and a link for each of its applets.
mkdir -p "$R/bin" "$R/sbin" "$R/usr/bin" "$R/usr/sbin" "$R/dev" "$R/proc" "$R/sys" \
	"$R/tmp" "$R/etc" "$R/lib/modules" "$R/root"
cp "$bb" "$R/bin/busybox"
for a in $("$bb" --list-full); do
	[ -e "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done
# The kernel opens /dev/console for init's stdio before init mounts devtmpfs.
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"

# Modules: a module's dependencies come from the "depends=" entry of its
# .modinfo section; load order is a depth-first post-order.
ko_path() { find "$kdir" -name "$1.ko*" | head -n 1; }
builtin() {
	grep -q "/$1.ko\$" "$kdir/modules.builtin" 2>/dev/null ||
		grep -q "/$(echo "$1" | tr _ -).ko\$" "$kdir/modules.builtin" 2>/dev/null
}
: >"$TMP/order"
# A subshell per call: its variables stay its own through the recursion, and
# its results are files.
add_module() (
	m=$(echo "$1" | tr - _)
	grep -qx "$m" "$TMP/order" && return 0
	builtin "$m" && return 0
	f=$(ko_path "$m")
	[ -n "$f" ] || f=$(ko_path "$(echo "$m" | tr _ -)")
	[ -n "$f" ] || die "module $m is neither built into nor shipped with $KPKG"
	case $f in
	*.ko) cp "$f" "$R/lib/modules/$m.ko" ;;
	*.ko.xz) xz -dc "$f" >"$R/lib/modules/$m.ko" || die "cannot decompress $f (install xz-utils)" ;;
	*.ko.zst) zstd -qdc "$f" >"$R/lib/modules/$m.ko" || die "cannot decompress $f (install zstd)" ;;
	*.ko.gz) gzip -dc "$f" >"$R/lib/modules/$m.ko" ;;
	*) die "module file $f has an unknown compression" ;;
	esac
	deps=$(tr '\0' '\n' <"$R/lib/modules/$m.ko" | sed -n 's/^depends=//p' | head -n 1 | tr , ' ')
	for d in $deps; do
		add_module "$d"
	done
	echo "$m" >>"$TMP/order"
)
for m in $MODULES; do
	add_module "$m"
done
cp "$TMP/order" "$R/lib/modules/load"

# The probe responder, static.
(cd "$REPO" && export CGO_ENABLED=0 GOOS=linux GOARCH=amd64 && run probe "$GO" build -trimpath -ldflags='-s -w' \
	-o "$R/bin/wnv-probe" ./lab/guest/probe) || die "go build ./lab/guest/probe failed: $(lastline probe)"

cp "$HERE/init" "$R/init"
chmod 755 "$R/init"

(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9 -n) >"$TMP/initramfs.cpio.gz" ||
	die "cpio of the initramfs failed"

# Replace the outputs as a whole: stamp last, so an interrupted build is
# rebuilt next time.
rm -f "$OUT/stamp"
for f in vmlinuz initramfs.cpio.gz; do
	src=$TMP/$f
	[ $f = vmlinuz ] && src=$vmlinuz
	if ! { cp "$src" "$OUT/$f.new" && mv "$OUT/$f.new" "$OUT/$f"; }; then
		die "cannot write $OUT/$f"
	fi
done
echo "$stamp" >"$OUT/stamp"
echo "guest image built: $OUT ($KPKG $KVER, busybox $BVER)"

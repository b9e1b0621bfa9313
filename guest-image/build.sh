#!/usr/bin/env bash
# Builds the guest image (vmlinuz + initramfs) from Debian's linux-image-cloud-amd64, busybox-static,
# mke2fs and the static berth-agent. Outputs are cached under $BERTH_CACHE (default
# ~/.cache/berth) by a hash of every input and rebuilt only when an input changes.
#
# usage: guest-image/build.sh AGENT_BINARY OUT_DIR
set -euo pipefail

agent=${1:?usage: build.sh AGENT_BINARY OUT_DIR}
out=${2:?usage: build.sh AGENT_BINARY OUT_DIR}
cache=${BERTH_CACHE:-$HOME/.cache/berth}
here=$(cd "$(dirname "$0")" && pwd)
modules=(virtio_ring virtio virtio_mmio vsock vmw_vsock_virtio_transport_common
  vmw_vsock_virtio_transport virtio_blk failover net_failover virtio_net overlay fuse virtiofs
  llc stp bridge veth nfnetlink libcrc32c nf_tables nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack nf_nat
  nft_chain_nat nft_masq nft_ct nf_reject_ipv4 nf_reject_ipv6 nft_reject nft_reject_inet)

die() { echo "guest-image: $*" >&2; exit 1; }
[ -x "$agent" ] || die "agent binary $agent not found (make agent builds it)"
for tool in apt-cache apt-get dpkg depmod cpio zstd busybox; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
done
file "$agent" 2>/dev/null | grep -qE "static(-pie)? linked" || ldd "$agent" 2>&1 | grep -qE "not a dynamic|statically linked" \
  || die "$agent is not statically linked"

# The kernel package the meta package points at today, e.g. linux-image-6.1.0-56-cloud-amd64.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || die "linux-image-cloud-amd64 is unknown to apt (run apt-get update)"
kpkg_version=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
busybox_bin=$(command -v busybox)
mke2fs_bin=/sbin/mke2fs
[ -x "$mke2fs_bin" ] || die "mke2fs is missing (e2fsprogs)"
tune2fs_bin=/sbin/tune2fs
[ -x "$tune2fs_bin" ] || die "tune2fs is missing (e2fsprogs)"
crun_bin=$(command -v crun || true)
[ -n "$crun_bin" ] || die "crun is missing (scripts/setup.sh installs it)"
ip_bin=/usr/sbin/ip
[ -x "$ip_bin" ] || die "ip is missing (iproute2; scripts/setup.sh installs it)"
nft_bin=/usr/sbin/nft
[ -x "$nft_bin" ] || die "nft is missing (nftables; scripts/setup.sh installs it)"

key=$( {
  echo "$kpkg $kpkg_version ${modules[*]}"
  sha256sum "$agent" "$busybox_bin" "$mke2fs_bin" "$tune2fs_bin" "$crun_bin" "$ip_bin" "$nft_bin" "$0" \
    "$here/udhcpc.sh" /etc/ssl/certs/ca-certificates.crt
} | sha256sum | cut -c1-16)
dest="$cache/guest-image/$key"

if [ ! -s "$dest/initramfs" ] || [ ! -s "$dest/vmlinuz" ]; then
  echo "guest-image: building $key ($kpkg $kpkg_version)"
  mkdir -p "$cache/debs"
  deb=$(ls "$cache/debs/${kpkg}_"*.deb 2>/dev/null | grep -F "_${kpkg_version//:/%3a}_" | head -n1 || true)
  if [ -z "$deb" ]; then
    (cd "$cache/debs" && apt-get download "$kpkg=$kpkg_version" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
    deb=$(ls "$cache/debs/${kpkg}_"*.deb 2>/dev/null | head -n1)
    [ -n "$deb" ] || die "could not download $kpkg"
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  dpkg -x "$deb" "$work/kpkg"
  kver=$(ls "$work/kpkg/lib/modules")
  root="$work/root"
  mkdir -p "$root"/{bin,sbin,dev,proc,sys,run,tmp,etc,var/lib/berth,lib/modules/"$kver"}
  # The module chain and depmod's tables for it.
  for m in "${modules[@]}"; do
    src=$(find "$work/kpkg/lib/modules/$kver/kernel" -name "$m.ko*" | head -n1)
    [ -n "$src" ] || die "module $m not found in $kpkg"
    rel=${src#"$work/kpkg/lib/modules/$kver/"}
    mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
    cp "$src" "$root/lib/modules/$kver/$rel"
  done
  cp "$work/kpkg/lib/modules/$kver"/modules.{builtin,builtin.modinfo,order} "$root/lib/modules/$kver/" 2>/dev/null || true
  depmod -b "$root" "$kver"
  # busybox-static and its applets.
  cp "$busybox_bin" "$root/bin/busybox"
  for applet in $("$busybox_bin" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  # mke2fs and tune2fs (the data disk and its reserve), crun (the OCI runtime), ip and nft
  # (container networks) with the shared libraries they need.
  for bin in "$mke2fs_bin:sbin/mke2fs" "$tune2fs_bin:sbin/tune2fs" "$crun_bin:usr/bin/crun" "$ip_bin:usr/sbin/ip" "$nft_bin:usr/sbin/nft"; do
    mkdir -p "$root/$(dirname "${bin#*:}")"
    cp "${bin%%:*}" "$root/${bin#*:}"
    for lib in $(ldd "${bin%%:*}" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  # eth0's DHCP client hook (busybox udhcpc).
  mkdir -p "$root/etc/berth"
  install -m 0755 "$here/udhcpc.sh" "$root/etc/berth/udhcpc.sh"
  # The agent is init.
  cp "$agent" "$root/init"
  ln -s ../init "$root/sbin/berth-agent"
  # CA roots for registries over HTTPS.
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  echo "berth" > "$root/etc/hostname"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  if [ "$(id -u)" = 0 ]; then mknod -m 600 "$root/dev/console" c 5 1; fi
  mkdir -p "$dest.tmp"
  cp "$work/kpkg/boot/vmlinuz-$kver" "$dest.tmp/vmlinuz"
  (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) \
    | zstd -q -T0 -6 > "$dest.tmp/initramfs"
  echo "$kver" > "$dest.tmp/kernel-release"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
else
  echo "guest-image: cached $key"
fi

mkdir -p "$out"
for f in vmlinuz initramfs kernel-release; do
  cp "$dest/$f" "$out/$f.tmp" && mv "$out/$f.tmp" "$out/$f"
done
echo "$key" > "$out/image-id"
size=$(du -cb "$out/vmlinuz" "$out/initramfs" | awk 'END {print $1}')
echo "guest-image: $out: kernel $(cat "$out/kernel-release"), vmlinuz $(du -h "$out/vmlinuz" | cut -f1), initramfs $(du -h "$out/initramfs" | cut -f1), total $((size / 1024)) KiB"

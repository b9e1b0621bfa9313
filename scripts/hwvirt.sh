#!/usr/bin/env bash
# Runs a command under emulated hardware virtualization, where this machine's own /dev/kvm
# cannot boot Linux (a software hypervisor) but Berth's KVM paths must still be tested.
#
# How: a qemu-TCG VM ("L1", q35, `-cpu max`, which emulates AMD SVM with nested paging) boots
# Debian's generic kernel (the cloud kernel has no 9p) and loads kvm-amd, so /dev/kvm inside it
# has hardware-KVM semantics. L1 sees this machine's whole tree read-only over 9p under a tmpfs
# overlay, so every binary built here runs there at the same path; /tmp is a fresh tmpfs (overlay
# on 9p cannot hard-link). L1 enters that tree with switch_root, not chroot (user namespaces,
# which passt and virtiofsd use, refuse a chrooted caller). A slirp NIC gives passt an external
# interface; this machine's loopback is 10.0.2.2 from L1.
#
# L1's /tmp hides this machine's, except for the git checkout COMMAND runs in, which L1 sees
# (read-only) at its path wherever it is.
#
# A directory of this machine (--out DIR, else a temporary one removed at the end) is shared
# read-write at the same path in L1 and exported to COMMAND as HWVIRT_OUT: what COMMAND writes
# there stays here. The exit status is COMMAND's; 98 if L1 ended before COMMAND did.
#
# Usage: scripts/hwvirt.sh [--mem MIB] [--cpus N] [--timeout SECONDS] [--out DIR] [--] COMMAND...
#        scripts/hwvirt.sh --prepare     (builds the cached L1 kernel and initramfs only)
set -euo pipefail

mem=6144 cpus=1 limit=${HWVIRT_TIMEOUT:-1800} prepare=0 out=
while [ $# -gt 0 ]; do
  case $1 in
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --prepare) prepare=1; shift ;;
    --) shift; break ;;
    -*) echo "hwvirt: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $prepare = 1 ] || [ $# -gt 0 ] || { echo "usage: $0 [--mem MIB] [--cpus N] [--timeout S] COMMAND..." >&2; exit 2; }

cache=${BERTH_CACHE:-$HOME/.cache/berth}/hwvirt
die() { echo "hwvirt: $*" >&2; exit 2; }
for tool in qemu-system-x86_64 apt-cache apt-get dpkg busybox cpio gzip modinfo setpriv timeout flock; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
done

# The kernel package Debian's generic meta package points at, e.g. linux-image-6.1.0-57-amd64.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || die "linux-image-amd64 is unknown to apt (run apt-get update)"
kver=${kpkg#linux-image-}
key=$( { echo "$kpkg $(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')"; sha256sum "$0" "$(command -v busybox)"; } | sha256sum | cut -c1-12)
img=$cache/l1-$key
mkdir -p "$cache"
# One build at a time (tests may start several runs at once).
exec 9>"$cache/l1.lock"
flock 9
if [ ! -s "$img/initramfs" ]; then
  echo "hwvirt: building the L1 image ($kpkg)" >&2
  rm -rf "$img.tmp"; mkdir -p "$img.tmp/deb" "$img.tmp/root"
  (cd "$img.tmp/deb" && apt-get download "$kpkg" >/dev/null 2>&1) || die "apt-get download $kpkg failed"
  dpkg -x "$img.tmp/deb/"*.deb "$img.tmp/pkg"
  moddir=$img.tmp/pkg/lib/modules/$kver
  root=$img.tmp/root
  mkdir -p "$root"/{bin,mods,proc,sys,dev,lower,upper,new,out}
  cp "$(command -v busybox)" "$root/bin/busybox"
  # Each wanted module after the modules it depends on.
  order=()
  want() {
    local name=$1 file dep
    for done_name in "${order[@]:-}"; do [ "$done_name" = "$name" ] && return 0; done
    file=$(find "$moddir/kernel" -name "$name.ko*" | head -n1)
    [ -n "$file" ] || die "module $name is not in $kpkg"
    for dep in $(modinfo -F depends "$file" | tr ',' ' '); do want "$dep"; done
    order+=("$name")
    case $file in
      *.ko.xz) xz -dc "$file" > "$root/mods/$name.ko" ;;
      *.ko.zst) zstd -qdc "$file" > "$root/mods/$name.ko" ;;
      *) cp "$file" "$root/mods/$name.ko" ;;
    esac
  }
  for m in kvm kvm-amd virtio_pci 9pnet_virtio 9p overlay virtio_net; do want "$m"; done
  echo "${order[*]}" > "$root/mods/order"
  cp "$img.tmp/pkg/boot/vmlinuz-$kver" "$img.tmp/vmlinuz"
  cat > "$root/init" <<'EOF'
#!/bin/busybox sh
# L1's init: modules, this machine's tree as an overlay root, then COMMAND in it.
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod "/mods/$m.ko" || echo "hwvirt-l1: insmod $m failed"; done
arg() { sed -n "s/.*hwvirt\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
run=$(arg run); bind=$(arg bind)
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose root /lower || { echo "hwvirt-l1: no 9p root"; poweroff -f; }
mount -t tmpfs -o size=90% upper /upper && mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work,xino=off root /new || { echo "hwvirt-l1: overlay failed"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 out "/new$run" || { echo "hwvirt-l1: no run dir"; poweroff -f; }
ncpu=$(grep -c ^processor /proc/cpuinfo)
for d in proc sys dev; do mount --move /$d /new/$d; done
mkdir -p /new/dev/pts /new/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /new/dev/pts
mount -t tmpfs shm /new/dev/shm
mount -t cgroup2 cgroup2 /new/sys/fs/cgroup
mount -t tmpfs -o mode=1777,size=60% tmp /new/tmp
# The checkout itself, when it lies under this machine's /tmp (a CI clone, say).
if [ -n "$bind" ]; then mkdir -p "/new$bind" && mount --bind "/lower$bind" "/new$bind"; fi
mount -t tmpfs -o mode=0755 run /new/run
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
echo "nameserver 10.0.2.3" > /upper/resolv.conf && mount --bind /upper/resolv.conf /new/etc/resolv.conf
echo "hwvirt-l1: $ncpu cpu, /dev/kvm $([ -c /new/dev/kvm ] && echo ready || echo MISSING)"
exec switch_root /new /bin/bash -c "bash '$run/cmd.sh'; echo \$? > '$run/status'; sync; echo o > /proc/sysrq-trigger; /bin/busybox sleep 5; /bin/busybox poweroff -f"
EOF
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$img.tmp/initramfs")
  rm -rf "$img.tmp/deb" "$img.tmp/pkg" "$root"
  rm -rf "$img"; mv "$img.tmp" "$img"
  # Images of other kernels or of an older script are not used again.
  for old in "$cache"/l1-*; do [ "$old" = "$img" ] || rm -rf "$old"; done
fi
flock -u 9; exec 9>&-
[ $prepare = 0 ] || { echo "$img"; exit 0; }

if [ -n "$out" ]; then
  mkdir -p "$out"; run=$(cd "$out" && pwd); rm -f "$run/status" "$run/cmd.sh"
else
  run=$(mktemp -d "$cache/run.XXXXXX"); trap 'rm -rf "$run"' EXIT
fi
{
  echo "export PATH='$PATH' HOME='$HOME' HWVIRT_OUT='$run' TERM=dumb"
  for v in BERTH_CACHE CARGO_HOME RUST_LOG RUST_BACKTRACE; do
    [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  printf 'cd %q || exit 97\n' "$PWD"
  printf '%q ' "$@"; echo
} > "$run/cmd.sh"
top=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
bind=""
case $top in /tmp/*) bind=" hwvirt.bind=$top" ;; esac
echo "hwvirt: L1 ($mem MiB, $cpus cpu) runs: $*; run dir $run" >&2
set +e
# L1 ends with this script, however it ends: each link of script -> timeout -> qemu dies when
# its parent does (parent-death signal), and timeout stops a run past the limit.
setpriv --pdeathsig KILL timeout --foreground -k 10 "$limit" setpriv --pdeathsig KILL qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -cpu max \
  -m "$mem" -smp "$cpus" -nodefaults -no-user-config -display none -no-reboot \
  -serial stdio -kernel "$img/vmlinuz" -initrd "$img/initramfs" \
  -append "console=ttyS0 quiet panic=-1 tsc_early_khz=2600000 hwvirt.run=$run$bind" \
  -virtfs local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$run,mount_tag=out,security_model=none,multidevs=remap" \
  -nic user,model=virtio-net-pci </dev/null 2>&1 | tr -d '\r'
qemu_rc=${PIPESTATUS[0]}
set -e
if [ -s "$run/status" ]; then
  rc=$(cat "$run/status")
else
  echo "hwvirt: L1 ended (qemu status $qemu_rc) before COMMAND finished" >&2
  rc=98
fi
exit "$rc"

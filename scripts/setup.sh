#!/usr/bin/env bash
# Installs what building and testing Berth needs on Debian 12: Debian packages and cargo-installed
# tools at pinned versions. Quick when everything is already there.
set -euo pipefail

packages=(qemu-system-x86 protobuf-compiler busybox-static e2fsprogs cpio kmod zstd file ca-certificates
  crun docker-registry python3-venv passt iproute2 nftables openssl
  # virtiofsd's build (host file sharing): libseccomp and libcap-ng.
  libseccomp-dev libcap-ng-dev
  # The desktop app (Tauri 2: WebKitGTK, the tray's appindicator) and its tests in a real window
  # driven over WebDriver under Xvfb.
  pkg-config libssl-dev libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev
  webkit2gtk-driver xvfb xauth dbus dbus-x11 at-spi2-core)
vhost_vsock_version=0.3.0
# docker-py for the suites that drive Berth through a third-party client, in a venv of its own.
docker_py_version=7.1.0
venv=${BERTH_CACHE:-$HOME/.cache/berth}/venv-docker-py

# `make bench` measures Berth next to Debian's Docker Engine.
if [ "${1:-}" = "--bench" ]; then
  packages+=(docker.io)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
# The guest image downloads the kernel package through apt: its lists must know it.
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  $sudo apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# sshd for the test of `berth -H ssh://`, which starts its own on 127.0.0.1: installed without
# starting the system's (policy-rc.d says no), so nothing new listens on this machine.
if ! dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q "install ok installed"; then
  echo "setup: installing openssh-server (not started)"
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  ok=0
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openssh-server >/dev/null || ok=$?
  $sudo rm -f /usr/sbin/policy-rc.d
  [ "$ok" = 0 ]
fi

cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
if ! "$cargo_bin/vhost-device-vsock" --version 2>/dev/null | grep -q "$vhost_vsock_version"; then
  echo "setup: cargo install vhost-device-vsock $vhost_vsock_version"
  cargo install --locked --version "$vhost_vsock_version" vhost-device-vsock
fi

# Host directories reach the VM over virtio-fs through virtiofsd, a process of its own (it pins
# its own rust-vmm crates).
virtiofsd_version=1.14.0
if ! "$cargo_bin/virtiofsd" --version 2>/dev/null | grep -q "$virtiofsd_version"; then
  echo "setup: cargo install virtiofsd $virtiofsd_version"
  cargo install --locked --version "$virtiofsd_version" virtiofsd
fi

tauri_driver_version=2.0.6
if ! "$cargo_bin/tauri-driver" --version 2>/dev/null | grep -q "$tauri_driver_version"; then
  echo "setup: cargo install tauri-driver $tauri_driver_version"
  cargo install --locked --version "$tauri_driver_version" tauri-driver
fi

# The Tauri bundler, for `make package`.
tauri_cli_version=2.12.4
if ! "$cargo_bin/cargo-tauri" --version 2>/dev/null | grep -q "$tauri_cli_version"; then
  echo "setup: cargo install tauri-cli $tauri_cli_version"
  cargo install --locked --version "$tauri_cli_version" tauri-cli
fi

if ! "$venv/bin/python" -c "import docker, sys; sys.exit(docker.__version__ != '$docker_py_version')" 2>/dev/null; then
  echo "setup: docker-py $docker_py_version in $venv"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "docker==$docker_py_version"
fi

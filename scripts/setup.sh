#!/usr/bin/env bash
# Sets up everything Ambit needs on a Debian 12 machine, idempotently: Debian packages, npm
# dependencies (which bring Node 24), the TypeScript build, the BPF objects, the native shim, and
# the cgroup2 and bpffs mounts. A second run checks and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages: tools the agent, local mode, tests and benchmarks call. The BPF objects build
# against linux-libc-dev's uapi headers (no kernel BTF or vmlinux.h from this host); bpftool and
# llvm (llvm-objcopy) are used by the BPF tests.
PKGS=(clang llvm libbpf-dev linux-libc-dev bpftool gcc make iproute2 nftables util-linux curl tcpdump prometheus stunnel4 haproxy nginx-light iperf3 procps openssl)
if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The Debian prometheus and nginx packages start services; Ambit runs its own instances.
    for svc in prometheus nginx haproxy; do
      if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
    done
  fi
else
  say "not root: skipping Debian packages and mounts (BPF capture and local mode need root)"
fi

# npm dependencies, reinstalled only when package-lock.json changed.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x node_modules/.bin/node ] || [ "$(cat node_modules/.ambit-lock 2>/dev/null)" != "$lock_hash" ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.ambit-lock
fi

# Build: TypeScript (incremental), BPF objects and the native shim (make skips what is current).
say "building"
node_modules/.bin/tsc -p .
if command -v clang >/dev/null 2>&1 && [ -d bpf ] && [ -f bpf/Makefile ]; then make -s -C bpf; fi
if [ -f native/Makefile ]; then make -s -C native; fi

# Mounts the agent needs: a cgroup2 hierarchy and bpffs.
if [ "$(id -u)" = 0 ]; then
  if ! awk '$3=="cgroup2"{f=1} END{exit !f}' /proc/mounts; then
    if [ -d /sys/fs/cgroup ] && [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
      mount -t cgroup2 none /sys/fs/cgroup
    else
      mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified
    fi
    say "mounted cgroup2"
  fi
  if ! awk '$2=="/sys/fs/bpf" && $3=="bpf"{f=1} END{exit !f}' /proc/mounts; then
    mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
    say "mounted bpffs at /sys/fs/bpf"
  fi
  # /var/run/netns exists once `ip netns` has run; make it so local mode can bind there.
  mkdir -p /var/run/netns
fi
say "ready (node $(node_modules/.bin/node --version))"

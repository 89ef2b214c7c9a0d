#!/usr/bin/env bash
# Builds the Ambit container image on a Debian 12 machine with no registry and no Docker engine:
# a root filesystem from Debian's packages (mmdebstrap), the production npm dependencies with the
# pinned Node 24, and the built dist/, BPF objects and native shim, assembled by buildah from the
# Containerfile and saved as an OCI archive (and, with --docker-archive, a docker-save archive).
#
#   scripts/build-image.sh [--out DIR] [--tag NAME:TAG] [--docker-archive] [--no-build]
#   scripts/build-image.sh --list       # print the files the image's /app will hold, build nothing
#
# Load the archive into a cluster's nodes: see docs/kubernetes.md ("The image").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
say() { printf '[build-image] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

VERSION=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package.json | head -1)
TAG="localhost/ambit:${VERSION}"
OUT="$ROOT/dist/image"
DOCKER_ARCHIVE=0
BUILD=1
LIST=0
SUITE=bookworm
MIRROR=${AMBIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${AMBIT_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What the processes in the image call or load: libbpf.so.1 (native shim), nft/ip/nsenter (capture
# fallback and reply routing), test (the installer's probe), CA roots.
ROOTFS_PACKAGES=libbpf1,libelf1,zlib1g,nftables,iproute2,util-linux,coreutils,ca-certificates

while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --docker-archive) DOCKER_ARCHIVE=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --list) LIST=1; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

# stage_app DIR: the application as /app holds it (no node_modules).
stage_app() {
  local app=$1
  mkdir -p "$app/dist" "$app/native" "$app/bpf" "$app/bin"
  cp package.json "$app/"
  cp bin/ambit.mjs "$app/bin/"
  # Compiled TypeScript of the programs (no tests, no benchmarks, no source maps).
  (cd dist && find src native -name '*.js' -print0 | xargs -0 cp --parents -t "$app/dist")
  # .proto files are read at run time next to the sources (src/shared/api/load.ts).
  find src -name '*.proto' -print0 | xargs -0 cp --parents -t "$app"
  cp native/libambit-shim.so "$app/native/"
  cp bpf/*.bpf.o "$app/bpf/"
}

if [ "$LIST" = 1 ]; then
  [ -d dist/src ] || die "dist/ is not built; run npm run build first"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  stage_app "$tmp/app"
  (cd "$tmp/app" && find . -type f | sed 's|^\./||' | sort)
  exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (buildah and mmdebstrap need it here)"
START=$(date +%s)

# Tools from Debian, installed only if missing.
missing=()
for p in buildah mmdebstrap; do command -v "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$BUILD" = 1 ]; then
  say "building TypeScript, BPF objects and the native shim (npm run build)"
  npm run build --silent
fi
for f in dist/src/agent/main.js dist/src/controller/main.js dist/src/cni/main.js dist/src/cni/install-main.js native/libambit-shim.so node_modules/node/bin/node; do
  [ -e "$f" ] || die "$f is missing; run scripts/setup.sh (or npm run build)"
done
ls bpf/*.bpf.o >/dev/null 2>&1 || die "no BPF objects in bpf/; run npm run build"

WORK=$(mktemp -d /var/tmp/ambit-image.XXXXXX)
STORE="$WORK/storage"
cleanup() {
  set +e
  buildah --root "$STORE" --runroot "$WORK/run" rmi --all >/dev/null 2>&1
  # buildah may leave overlay mounts under its root; unmount before removing it.
  awk -v root="$STORE" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount "$m"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
CTX="$WORK/context"
mkdir -p "$CTX" "$OUT"

# 1. Root filesystem, cached by package list and suite (a rebuild of the app reuses it).
CACHE=/var/cache/ambit-image
mkdir -p "$CACHE"
key=$(printf '%s %s %s %s' "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "$ROOTFS_PACKAGES" | sha256sum | cut -c1-16)
ROOTFS="$CACHE/rootfs-$SUITE-$key.tar"
if [ ! -f "$ROOTFS" ]; then
  say "making the Debian $SUITE root filesystem (mmdebstrap, minbase + $ROOTFS_PACKAGES)"
  # mmdebstrap picks its output format from the name: keep ".tar" at the end of the partial file.
  partial="$CACHE/partial-$(basename "$ROOTFS")"
  rm -rf "$partial" "$ROOTFS"
  mmdebstrap --quiet --variant=minbase --include="$ROOTFS_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$SUITE" "$partial" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" </dev/null
  mv "$partial" "$ROOTFS"
else
  say "reusing the root filesystem $ROOTFS"
fi
ln "$ROOTFS" "$CTX/rootfs.tar" 2>/dev/null || cp "$ROOTFS" "$CTX/rootfs.tar"

# 2. Production npm dependencies: a copy of node_modules pruned offline (no registry needed).
say "staging production node_modules"
mkdir -p "$WORK/prune"
cp package.json package-lock.json "$WORK/prune/"
cp -a node_modules "$WORK/prune/node_modules"
(cd "$WORK/prune" && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >/dev/null)
# koffi ships prebuilt binaries for every platform; keep this machine's.
arch=$(node_modules/.bin/node -p 'process.platform + "_" + process.arch')
if [ -d "$WORK/prune/node_modules/koffi/build/koffi" ]; then
  find "$WORK/prune/node_modules/koffi/build/koffi" -mindepth 1 -maxdepth 1 ! -name "$arch" -exec rm -rf {} +
fi
mv "$WORK/prune/node_modules" "$CTX/node_modules"

# 3. The application.
say "staging the application"
stage_app "$CTX/app"

# 4. Commands on PATH.
mkdir -p "$CTX/links/usr/local/bin"
ln -s /app/node_modules/node/bin/node "$CTX/links/usr/local/bin/node"
ln -s /app/bin/ambit.mjs "$CTX/links/usr/local/bin/ambit"
chmod 755 "$CTX/app/bin/ambit.mjs"

cp Containerfile "$CTX/Containerfile"
say "assembling $TAG with buildah"
driver=overlay
buildah --root "$STORE" --runroot "$WORK/run" --storage-driver "$driver" info >/dev/null 2>&1 || driver=vfs
B=(buildah --root "$STORE" --runroot "$WORK/run" --storage-driver "$driver")
"${B[@]}" bud --quiet --format oci --timestamp 0 --layers -f "$CTX/Containerfile" -t "$TAG" "$CTX" >/dev/null

base="ambit-${VERSION}"
rm -f "$OUT/$base.oci.tar" "$OUT/$base.docker.tar"
"${B[@]}" push --quiet "$TAG" "oci-archive:$OUT/$base.oci.tar:$TAG"
if [ "$DOCKER_ARCHIVE" = 1 ]; then
  "${B[@]}" push --quiet --format v2s2 "$TAG" "docker-archive:$OUT/$base.docker.tar:$TAG"
fi

# Report: the archive's layers (compressed sizes, from its manifest), sizes and time.
id=$("${B[@]}" images --noheading --format '{{.ID}}' "$TAG" | head -1)
say "image $TAG ($id), built with the $driver storage driver"
"${B[@]}" images --noheading --format '{{.Size}}' "$TAG" | head -1 | sed 's/^/[build-image]   image size (uncompressed): /' >&2
# Layer n is the n-th ADD/COPY of the Containerfile (FROM scratch; the other steps add none).
tar -xOf "$OUT/$base.oci.tar" index.json | node_modules/.bin/node -e '
  const { execFileSync } = require("node:child_process");
  const { readFileSync } = require("node:fs");
  const [archive, containerfile] = process.argv.slice(1);
  const steps = readFileSync(containerfile, "utf8").split("\n").filter((l) => /^(ADD|COPY) /.test(l));
  const blob = (d) => JSON.parse(execFileSync("tar", ["-xOf", archive, `blobs/sha256/${d.slice(7)}`], { maxBuffer: 1 << 24 }));
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const manifest = blob(JSON.parse(s).manifests[0].digest);
    manifest.layers.forEach((l, n) => console.error(`[build-image]   layer ${n + 1}: ${(l.size / 1048576).toFixed(1).padStart(6)} MiB gzip  ${steps[n] || "?"}`));
  });' "$OUT/$base.oci.tar" Containerfile
for f in "$OUT/$base".*.tar; do say "  archive: $f ($(du -h "$f" | cut -f1))"; done
say "done in $(( $(date +%s) - START )) s"

#!/usr/bin/env bash
# Builds the peers of bench/compare into BUILD_DIR/peers: the in-process runner
# (onnxserve-inproc, C) and the Go service (go-peer, cgo). It installs the npm package
# onnxruntime-node@1.29.0 for the Node.js peer under the cache. Safe to run again: finished
# steps are skipped.
#
# Usage: bench/peers/build.sh [BUILD_DIR] (default: build). ONNX Runtime comes from
# ONNXSERVE_CACHE (default ~/.cache/onnxserve)/onnxruntime-1.29.0, which scripts/fetch-deps.sh
# lays out. golang-go is installed from Debian when missing, through sudo when not root.
# Go builds with the standard library only and GOPROXY=off, so it never downloads a module.
# The npm tarballs are checked against the registry's sha512 integrity hashes pinned below.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=${1:-build}
cache=${ONNXSERVE_CACHE:-$HOME/.cache/onnxserve}
ort=$cache/onnxruntime-1.29.0
out=$build/peers
mkdir -p "$out" "$cache/tarballs"
if [[ ! -f "$ort/include/onnxruntime_c_api.h" ]]; then
  echo "build.sh: $ort not found; run scripts/fetch-deps.sh (or make build) first" >&2
  exit 1
fi

# golang-go, only when missing, the way scripts/install-deps.sh installs packages.
if [[ $(dpkg-query -W -f='${db:Status-Status}' golang-go 2>/dev/null || true) != installed ]] &&
   ! command -v go >/dev/null 2>&1; then
  echo "build.sh: installing the missing Debian package golang-go" >&2
  if [[ $(id -u) -eq 0 ]]; then
    run_as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    run_as_root=(sudo)
  else
    echo "build.sh: not running as root and sudo is not installed; as root, run:" >&2
    echo "  apt-get update && apt-get install -y golang-go" >&2
    exit 1
  fi
  "${run_as_root[@]}" apt-get update
  "${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go
fi

cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -isystem "$ort/include" \
  bench/peers/inproc/inproc.c -o "$out/onnxserve-inproc" \
  -L"$ort/lib" -Wl,-rpath,"$ort/lib" -lonnxruntime -lpthread

# go build writes an absolute output path, since it runs in the package folder.
go_out=$(cd "$out" && pwd)/go-peer
(
  cd bench/peers/go
  GOFLAGS=-mod=mod GOPROXY=off CGO_ENABLED=1 \
    CGO_CFLAGS="-O2 -I$ort/include" CGO_LDFLAGS="-L$ort/lib -Wl,-rpath,$ort/lib" \
    go build -o "$go_out" .
)

# npm name@version and sha512 integrity from `npm view NAME@VERSION dist.integrity`.
node_packages=(
  "onnxruntime-common@1.29.0 sha512-/F63/e2VJoaVXGGNu6S5QH7jivBThGO95OzAVXXQ8hTta/b1QxI8udHa6cI3+3mAb5WWIIaMMwfZw01oivjJ1g=="
  "onnxruntime-node@1.29.0 sha512-WjiVVB72riILz8HbYvxvmjKyE/WmkYoSfKY++axo5jAR609HQg8MwiG/HhShpTcJfmmAdzxxmB+MMST3A+SiPA=="
)

source scripts/npm-tarball.sh

node_root=$cache/onnxruntime-node-1.29.0
if [[ ! -f "$node_root/node_modules/onnxruntime-node/package.json" ]]; then
  tarballs=()
  for entry in "${node_packages[@]}"; do
    tarballs+=("$(fetch_tarball $entry)")
  done
  rm -rf "$node_root.part"
  mkdir -p "$node_root.part"
  # ONNXRUNTIME_NODE_INSTALL=skip stops the package's install script from downloading GPU
  # libraries; the CPU build in the tarball is all the peer uses. npm fetches the package's
  # other dependencies (adm-zip and global-agent, which only that install script uses) from
  # the registry.
  (
    cd "$node_root.part"
    # Its own package.json keeps npm from installing into a parent folder that has one.
    echo '{"private": true}' >package.json
    ONNXRUNTIME_NODE_INSTALL=skip npm install --silent --no-save --no-audit --no-fund \
      --no-package-lock "${tarballs[@]}"
  )
  rm -rf "$node_root"
  mv "$node_root.part" "$node_root"
fi
echo "$out"

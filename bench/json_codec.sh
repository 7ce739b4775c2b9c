#!/usr/bin/env bash
# Runs bench_json_codec (JSON decode and encode throughput on a 1x3x640x640 float32 tensor, next
# to strtof and "%.9g" loops) pinned to one core, and rewrites its own section of
# docs/BENCHMARKS.md with the result and the machine it ran on.
# Usage: bench/json_codec.sh [BUILD_DIR] (default build, a Release build from `make build`).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
cmake --build "$build" --target bench_json_codec -j2 >/dev/null
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
/usr/bin/python3 tests/tools/make_models.py "$data" >/dev/null

result=$(taskset -c "$(($(nproc) - 1))" "$build/bench_json_codec" "$data" 7)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
section=$(cat <<SECTION
<!-- json_codec:begin -->
## JSON codec throughput (bench/json_codec.sh)

Run on $(date -u +%Y-%m-%d), $cpu, $(nproc) cores, pinned to one core, $(basename "$build") build:

\`\`\`
$result
\`\`\`

A ratio is the codec's time over the plain C library loop on the same numbers; below 1 is faster.
<!-- json_codec:end -->
SECTION
)

doc=docs/BENCHMARKS.md
[[ -f "$doc" ]] || printf '# Benchmarks\n\nEach section is written by the script it names; rerun the script to update it.\n' > "$doc"
if grep -q '<!-- json_codec:begin -->' "$doc"; then
  /usr/bin/python3 - "$doc" "$section" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r"<!-- json_codec:begin -->.*?<!-- json_codec:end -->", lambda m: section, text,
              flags=re.S)
open(path, "w").write(text)
PY
else
  printf '\n%s\n' "$section" >> "$doc"
fi
echo "$result"

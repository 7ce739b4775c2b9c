#!/usr/bin/env bash
# Measures the end-to-end latency of the PaddleOCR detector (input x, FP32 1x3x640x640) through
# onnxserve with a KServe v2 JSON request and with the binary tensor extension, next to the same
# inference run in-process. Then rewrites its own section of docs/BENCHMARKS.md with the result
# and the machine it ran on.
#
# Placement: the server runs with its default flags, pinned to the last CPU; the HTTP client runs
# on CPU 0, so its own work does not compete with the server. The in-process inference runs on
# the server's CPU while the server is idle. On a single-CPU machine everything shares CPU 0.
#
# Usage: bench/e2e_detector.sh [BUILD_DIR] [ROUNDS] (defaults: build, a Release build from
# `make build`, and 15 rounds). ONNXSERVE_MODELS overrides the folder of the sample models.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
rounds=${2:-15}
model=${ONNXSERVE_MODELS:-$HOME/.cache/onnxserve/models}/ch_PP-OCRv4_det_infer.onnx
[[ -f "$model" ]] || { echo "model not found: $model (run scripts/fetch-deps.sh)" >&2; exit 1; }
cmake --build "$build" --target onnxserve bench_e2e_detector -j2 >/dev/null
# Other work on a shared machine shows up in every timing, so the record keeps the load.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

cpus=$(nproc)
server_cpu=$((cpus - 1))
client_cpu=0

work=$(mktemp -d)
server_pid=
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

log=$work/server.log
taskset -c "$server_cpu" "$build/onnxserve" --host 127.0.0.1 --http-port 0 --metrics-port 0 "$model" 2>"$log" &
server_pid=$!
port=
for _ in $(seq 600); do
  port=$(sed -n 's/.*"msg":"HTTP server listening".*"http_port":\([0-9]*\).*/\1/p' "$log")
  [[ -n "$port" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "onnxserve exited before listening; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
[[ -n "$port" ]] || { echo "onnxserve did not report its port within 60 s" >&2; exit 1; }

result=$("$build/bench_e2e_detector" --port "$port" --server-log "$log" --rounds "$rounds" \
  --server-cpu "$server_cpu" --client-cpu "$client_cpu" --compute-cpu "$server_cpu" "$model")
stop_server

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
memory=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- src include CMakeLists.txt 2>/dev/null; then
  commit="$commit with uncommitted changes in its sources"
fi
cat >"$work/section" <<SECTION
<!-- e2e_detector:begin -->
## End-to-end latency of the PaddleOCR detector (bench/e2e_detector.sh)

Run on $(date -u +%Y-%m-%d), $cpu, $cpus cores, $memory, Linux $(uname -r), onnxserve
$commit, built in \`$build\`, load average $load_before before the run:

\`\`\`
$result
\`\`\`

Compute is ONNX Runtime's \`Run\` in the benchmark's own process through libonnxserve, whose
default options match the server's default session settings (one intra-op thread, all graph
optimizations, memory arena and memory pattern on). It is the baseline of the goals: at most 1.3x
compute with JSON and at most 1.05x with the binary extension. "paired" is the median, over
requests, of each request's time over the compute time the server logged for that request, so
it shows the transport overhead without the drift of compute times on a shared machine. A
request's time runs from its first byte sent to its last byte received, with the request built
beforehand. The server parts come from its request log line, whose \`latency_us\` runs from the
first parsed request byte to the response ready to write. Latency minus the upload, queue and
compute is decoding, encoding and the hand-offs between the I/O thread and the worker, and the
client's total minus the latency is the response transfer. The server reads the body while the
client sends it, so the split between the upload and the server's part is approximate. The
in-process codec line times the server's codec on the same request bodies and the same output,
on the server's CPU.
<!-- e2e_detector:end -->
SECTION

doc=docs/BENCHMARKS.md
[[ -f "$doc" ]] || printf '# Benchmarks\n\nEach section is written by the script it names; rerun the script to update it.\n' >"$doc"
if grep -qx '<!-- e2e_detector:begin -->' "$doc"; then
  awk -v section="$work/section" '
    $0 == "<!-- e2e_detector:begin -->" {
      while ((getline line < section) > 0) print line
      skipping = 1
      next
    }
    $0 == "<!-- e2e_detector:end -->" { skipping = 0; next }
    !skipping { print }
  ' "$doc" >"$work/doc"
  cat "$work/doc" >"$doc"
else
  printf '\n' >>"$doc"
  cat "$work/section" >>"$doc"
fi
echo "$result"

#!/usr/bin/env bash
# Measures the scheduler on a ResNet-50 (scripts/make-resnet50.py, random weights) served by
# onnxserve under closed-loop load at concurrency 1, 4, 16 and 64. It serves the model in three
# configurations: batching off, dynamic batching with a fixed delay, and with the adaptive
# delay. In-process ONNX Runtime at batch 1 and batch 8 is the baseline. Then it rewrites its
# own section of docs/BENCHMARKS.md with the result and the machine it ran on.
#
# Placement: the server runs on the last CPU and the load generator on CPU 0; the in-process
# runs use the server's CPU while no server runs. On a 2-core machine that leaves the server one
# core for its HTTP thread and its model instance, so this measures the scheduler on one core,
# not multi-core scaling.
#
# Usage: bench/scheduler.sh [BUILD_DIR] (default: build, a Release build from `make build`).
# SCHEDULER_BENCH_SECONDS sets each measured window (default 20 s). With the default, one run
# took 433 s on a 2-core AMD EPYC machine where ResNet-50 takes about 85 ms per image.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
seconds=${SCHEDULER_BENCH_SECONDS:-20}
inproc_warmup=2
concurrencies=(1 4 16 64)
fixed_delay_us=2000
target_p99_ms=200
max_batch_size=8

# The sources are recorded when they are built, because others may commit during the run.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- src include CMakeLists.txt 2>/dev/null; then
  commit="$commit with uncommitted changes in its sources"
fi
cmake --build "$build" --target onnxserve bench_scheduler_load -j2 >/dev/null
load_bin=$build/bench_scheduler_load
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

started=$(date +%s)
model=$work/resnet50.onnx
/usr/bin/python3 scripts/make-resnet50.py "$model" 2>"$work/make-model.log"
model_line="model: $(sed 's/^wrote [^:]*: //' "$work/make-model.log")"

results=$work/results
report=$work/report
: >"$results"
: >"$report"
failed=0

# Runs in-process batch 1 and batch 8 on the server's CPU. $1 labels the round in the report.
run_inprocess() {
  local tag=$1 batch
  for batch in 1 8; do
    taskset -c "$server_cpu" "$load_bin" inprocess --model "$model" --batch "$batch" \
      --label "in-proc-b$batch" --seconds "$seconds" --warmup-seconds "$inproc_warmup" \
      --reference-out "$work/reference.bin" --results "$results" | sed "s/\$/  $tag/" \
      | tee -a "$report" || failed=1
  done
}

# Starts onnxserve on the model repository in $1 and sets port and server_pid.
start_server() {
  local repository=$1 log=$2
  taskset -c "$server_cpu" "$build/onnxserve" --host 127.0.0.1 --http-port 0 --metrics-port 0 \
    --model-repository "$repository" 2>"$log" &
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
  if ! grep -q '"msg":"models loaded".*"ready":1' "$log"; then
    echo "the model did not load; the server log:" >&2
    cat "$log" >&2
    exit 1
  fi
}

# Serves the model with config.json $2 under the name $1 and runs every concurrency.
run_config() {
  local name=$1 config=$2 concurrency warmup
  local repository=$work/repository-$name log=$work/server-$name.log
  mkdir -p "$repository/resnet50/1"
  # A hard link or a copy: the server refuses symbolic links that leave the repository.
  ln "$model" "$repository/resnet50/1/model.onnx" 2>/dev/null || cp "$model" "$repository/resnet50/1/model.onnx"
  printf '%s\n' "$config" >"$repository/resnet50/config.json"
  start_server "$repository" "$log"
  instances=$(sed -n 's/.*"msg":"model scheduler started".*"instances":\([0-9]*\).*/\1/p' "$log")
  for concurrency in "${concurrencies[@]}"; do
    # A closed loop reaches its steady queue after about one round of every connection.
    warmup=$(awk -v c="$concurrency" -v t="$batch1_seconds" \
      'BEGIN { w = 1.5 * c * t; printf "%.1f", (w > 5 ? w : 5) }')
    taskset -c "$client_cpu" "$load_bin" load --port "$port" --concurrency "$concurrency" \
      --label "$name" --seconds "$seconds" --warmup-seconds "$warmup" \
      --reference "$work/reference.bin" --server-log "$log" --results "$results" \
      | tee -a "$report" || failed=1
  done
  stop_server
}

echo "$model_line"
"$load_bin" header | tee -a "$report"
run_inprocess "(before)"
batch1_seconds=$(awk '$2 == "label=in-proc-b1" { split($6, v, "="); print v[2] / 1000 }' \
  "$results")

run_config off '{"max_batch_size": 0}'
run_config fixed "{\"max_batch_size\": $max_batch_size, \"dynamic_batching\": {\"max_queue_delay_us\": $fixed_delay_us}}"
run_config adaptive "{\"max_batch_size\": $max_batch_size, \"dynamic_batching\": {\"target_p99_ms\": $target_p99_ms}}"
run_inprocess "(after)"

# The goals, against the mean of the two in-process rounds.
goals=$(awk '
  function value(field,   pair) { split(field, pair, "="); return pair[2] }
  {
    mode = value($1); label = value($2); concurrency = value($3)
    throughput = value($5); p50 = value($6); busy = value($9)
  }
  mode == "inprocess" {
    batch = value($4)
    inproc_throughput[batch] += throughput; inproc_p50[batch] += p50; inproc_runs[batch]++
  }
  mode == "load" {
    # Saturated: the highest concurrency, where the queue never runs empty.
    if (!(label in saturated_at) || concurrency + 0 > saturated_at[label]) {
      saturated[label] = throughput; saturated_at[label] = concurrency + 0
      saturated_busy[label] = busy
    }
    if (concurrency == 1) single_p50[label] = p50
    if (!(label in seen)) { seen[label] = 1; order[++configs] = label }
  }
  END {
    best = 0
    for (batch in inproc_runs) {
      mean = inproc_throughput[batch] / inproc_runs[batch]
      if (mean > best) { best = mean; best_batch = batch }
    }
    p50_batch1 = inproc_p50[1] / inproc_runs[1]
    printf "baseline, mean of the two in-process rounds: best %.2f img/s (batch %d), batch 1 p50 %.1f ms\n", best, best_batch, p50_batch1
    for (i = 1; i <= configs; i++) {
      label = order[i]
      ratio = saturated[label] / best
      latency_ratio = single_p50[label] / p50_batch1
      printf "%-9s saturated (c=%d): %6.2f img/s, %.3fx the best, goal >= 0.97x: %s (busy %.1f%%)\n", \
        label, saturated_at[label], saturated[label], ratio, (ratio >= 0.97 ? "met" : "missed"), \
        100 * saturated_busy[label]
      printf "%-9s c=1 p50:         %6.1f ms, %.3fx batch 1, goal <= 1.05x: %s\n", "", \
        single_p50[label], latency_ratio, (latency_ratio <= 1.05 ? "met" : "missed")
    }
  }' "$results")
echo "$goals"
elapsed=$(($(date +%s) - started))

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
memory=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
runtime_version=$(sed -n 's/.*"onnxruntime_version":"\([^"]*\)".*/\1/p' "$work/server-off.log" | head -1)
cat >"$work/section" <<SECTION
<!-- scheduler:begin -->
## Scheduler: ResNet-50 under closed-loop load (bench/scheduler.sh)

Run on $(date -u +%Y-%m-%d), $cpu, $cpus cores, $memory, Linux $(uname -r), onnxserve
$commit, built in \`$build\`, ONNX Runtime $runtime_version, load average
$load_before before the run, ${elapsed} s in all:

\`\`\`
$model_line
placement: onnxserve on CPU $server_cpu (model instances: $instances, intra-op threads: 1),
  load generator on CPU $client_cpu, in-process runs on CPU $server_cpu while no server runs
$(cat "$report")

$goals
\`\`\`

Configurations, each a \`config.json\` in a fresh server: \`off\` is \`{"max_batch_size": 0}\`.
\`fixed\` sets \`max_batch_size\` $max_batch_size and \`"max_queue_delay_us": $fixed_delay_us\`, about 2% of one
image's compute, so a lone request still meets the latency goal. \`adaptive\` sets
\`max_batch_size\` $max_batch_size and \`"target_p99_ms": $target_p99_ms\`, about 2.3 times one image's compute.
Neither batching configuration sets preferred batch sizes. docs/ARCHITECTURE.md describes how
the adaptive delay follows the measured p99. Each server runs the concurrencies in the order
shown, so the adaptive delay carries its state from one to the next.

Load: each of the \`conc\` connections is a keep-alive HTTP/1.1 connection in its own thread
that sends one FP32 [1,3,224,224] image with the binary tensor extension (binary output
requested), waits for the response and sends the next at once. Every response, warm-up and
drain included, is checked against the in-process logits of the same image, one of 16
distinct images. "bit-identical" counts responses equal to them to the bit. Each point warms
up for 1.5 times the concurrency times the in-process batch 1 time, at least 5 s, so that the
closed loop reaches its steady queue. Then it measures for $seconds s.

Throughput counts the completions after the last one before the window opened, up to the last
one before it closed, over that span. So the window holds whole bursts of a batch's
responses, unless an edge falls inside the few milliseconds one burst lasts. p50 and p99 are
the client's times of the requests completed in the window, from the first request byte sent
to the last response byte received. \`batch\`, \`queue\` and \`compute\` are the mean batch size
and the medians of \`queue_us\` and \`compute_us\` in the server's request log lines of those
requests. \`queue\` includes the time a request waits for its batch to fill. \`busy\` is the
share of the window the model spent in \`Run\`: each request's compute time over its batch
size, summed, over the window. Near 100% the instance never waited for work, so a throughput
below the in-process one then comes from slower \`Run\` calls (the \`compute\` column), not
from the scheduler or the HTTP path.

In-process rows run ONNX Runtime's \`Run\` through libonnxserve, one batch after another, with
$inproc_warmup s of warm-up and then $seconds s. libonnxserve's default options match the server's
default session settings: one intra-op thread, all graph optimizations, memory arena and
memory pattern on. Their latency is one call, submit to completion. They ran before and after
the servers, and the goals compare with the mean of the two.

Limits: with 2 cores the server has one core for its HTTP thread and its single model
instance, so instance groups and intra-op threads are not exercised. A closed loop at
concurrency c queues about c requests, so its latency is about c times the time per image
whatever the configuration. The machine is shared, so compare ratios within one run.
<!-- scheduler:end -->
SECTION

doc=docs/BENCHMARKS.md
[[ -f "$doc" ]] || printf '# Benchmarks\n\nEach section is written by the script it names; rerun the script to update it.\n' >"$doc"
if grep -qx '<!-- scheduler:begin -->' "$doc"; then
  awk -v section="$work/section" '
    $0 == "<!-- scheduler:begin -->" {
      while ((getline line < section) > 0) print line
      skipping = 1
      next
    }
    $0 == "<!-- scheduler:end -->" { skipping = 0; next }
    !skipping { print }
  ' "$doc" >"$work/doc"
  cat "$work/doc" >"$doc"
else
  printf '\n' >>"$doc"
  cat "$work/section" >>"$doc"
fi
echo "finished in ${elapsed} s; wrote the scheduler section of $doc"
exit "$failed"

#!/usr/bin/env bash
# Starts one server of bench/compare on a free 127.0.0.1 port, pinned to one CPU, waits until
# it is ready and prints "port=PORT pid=PID log=FILE". The server keeps running after the
# script exits; stop it with `kill PID`.
#
# Usage: bench/peers/start.sh NAME MODEL.onnx [--cpu N] [--build DIR] [--log FILE]
#        [--request-log on|off]
#   NAME            onnxserve, go or node
#   --cpu N         the CPU that taskset pins the server to (default: the last CPU)
#   --build DIR     the build folder of onnxserve and bench/peers/build.sh (default: build)
#   --log FILE      where the server's stdout and stderr go (default: a new temporary file)
#   --request-log   onnxserve only. off (the default) turns its per-request info lines off
#                   through POST /v2/logging once it is ready, because the peers log nothing
#                   per request. on keeps them.
# Each server gets one intra-op thread. onnxserve serves MODEL.onnx under the file's name with
# one model instance. The Node.js peer needs the onnxruntime-node package that
# bench/peers/build.sh installs under the cache (ONNXSERVE_CACHE, default ~/.cache/onnxserve).
set -euo pipefail
cd "$(dirname "$0")/../.."

usage() {
  echo "usage: bench/peers/start.sh onnxserve|go|node MODEL.onnx [--cpu N] [--build DIR]" \
    "[--log FILE] [--request-log on|off]" >&2
  exit 2
}
[[ $# -ge 2 ]] || usage
name=$1 model=$2
shift 2
cpu=$(($(nproc) - 1))
build=build
log=
request_log=off
while [[ $# -gt 0 ]]; do
  case $1 in
    --cpu) cpu=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --request-log) request_log=$2; shift 2 ;;
    *) echo "start.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ -f "$model" ]] || { echo "start.sh: model $model not found" >&2; exit 1; }
[[ -n "$log" ]] || log=$(mktemp "${TMPDIR:-/tmp}/peer-$name.XXXXXX.log")
cache=${ONNXSERVE_CACHE:-$HOME/.cache/onnxserve}

case $name in
  onnxserve)
    taskset -c "$cpu" "$build/onnxserve" --host 127.0.0.1 --http-port 0 --metrics-port 0 \
      --workers 1 --intra-op-threads 1 "$model" >"$log" 2>&1 &
    port_pattern='s/.*"msg":"HTTP server listening".*"http_port":\([0-9]*\).*/\1/p'
    ;;
  go)
    taskset -c "$cpu" "$build/peers/go-peer" -model "$model" -host 127.0.0.1 -port 0 \
      -intra-op-threads 1 >"$log" 2>&1 &
    port_pattern='s/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p'
    ;;
  node)
    NODE_PATH="$cache/onnxruntime-node-1.29.0/node_modules" taskset -c "$cpu" \
      node bench/peers/node/server.js --model "$model" --host 127.0.0.1 --port 0 \
      --intra-op-threads 1 >"$log" 2>&1 &
    port_pattern='s/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p'
    ;;
  *)
    echo "start.sh: unknown server $name; expected onnxserve, go or node" >&2
    exit 2
    ;;
esac
pid=$!

# Readiness: the listening line, which each server writes once its model is loaded. A model
# such as ResNet-50 takes a few seconds to load, so the wait allows two minutes.
port=
for _ in $(seq 1200); do
  port=$(sed -n "$port_pattern" "$log" | head -1)
  [[ -n "$port" ]] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "start.sh: $name exited before listening; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$port" ]]; then
  echo "start.sh: $name did not report its port within 120 s; its log is $log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
fi

if [[ $name == onnxserve ]]; then
  # onnxserve starts listening before its models finish loading.
  ready=
  for _ in $(seq 1200); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/v2/health/ready"; then
      ready=1
      break
    fi
    sleep 0.1
  done
  if [[ -z "$ready" ]]; then
    echo "start.sh: onnxserve was not ready within 120 s; its log is $log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  if [[ $request_log == off ]]; then
    curl -sf -o /dev/null -d '{"log_info": false}' "http://127.0.0.1:$port/v2/logging"
  fi
fi
echo "port=$port pid=$pid log=$log"

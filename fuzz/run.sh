#!/usr/bin/env bash
# Runs libFuzzer drivers built by `make build-fuzz`, each for a bounded time, on a working copy
# of its seed corpus in the build folder, so that runs never change fuzz/corpus/.
#
#   fuzz/run.sh [--fresh] BUILD_DIR SECONDS NAME...
#
# --fresh starts each working corpus from the seeds again (CI); without it the corpus that
# earlier runs grew in BUILD_DIR/fuzz-corpus/NAME is kept and extended. Exits 1 when any
# driver reports a crash, a leak, a timeout or running out of memory, after running them all.
# The failing input is written to BUILD_DIR/fuzz-artifacts/NAME/.
set -euo pipefail

fresh=false
if [[ "${1:-}" == "--fresh" ]]; then
  fresh=true
  shift
fi
if (($# < 3)); then
  echo "usage: fuzz/run.sh [--fresh] BUILD_DIR SECONDS NAME..." >&2
  exit 2
fi
build=$1
seconds=$2
shift 2
source_dir=$(cd "$(dirname "$0")/.." && pwd)

# fast_unwind_on_malloc=0: ONNX Runtime allocates through libstdc++'s operator new, which has no
# frame pointers, so the fast unwinder stops before the ONNX Runtime frame that lsan.supp
# matches. fuzz/README.md gives its cost in speed.
export LSAN_OPTIONS="suppressions=$source_dir/tests/sanitizer/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failed=()
for name in "$@"; do
  driver="$build/fuzz/fuzz_$name"
  if [[ ! -x "$driver" ]]; then
    echo "fuzz: $driver not found; run make build-fuzz first" >&2
    exit 2
  fi
  corpus="$build/fuzz-corpus/$name"
  artifacts="$build/fuzz-artifacts/$name"
  if $fresh; then
    rm -rf "$corpus"
  fi
  mkdir -p "$corpus" "$artifacts"
  cp "$source_dir/fuzz/corpus/$name/"* "$corpus/"
  dictionary=()
  if [[ -f "$source_dir/fuzz/$name.dict" ]]; then
    dictionary=("-dict=$source_dir/fuzz/$name.dict")
  fi


  log="$build/fuzz-$name.log"
  echo "fuzz: running $name for $seconds s (log: $log)"
  # -timeout: an input that runs longer than this counts as a hang. The HTTP driver already
  # aborts after 20 s without a response.
  if "$driver" "${dictionary[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
       -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added):' "$log" |
      sed "s/^/fuzz: $name: /"
  else
    echo "fuzz: $name FAILED; the end of $log:" >&2
    tail -n 60 "$log" >&2
    failed+=("$name")
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: failed: ${failed[*]}; inputs in $build/fuzz-artifacts/" >&2
  exit 1
fi
echo "fuzz: all passed: $*"

#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a fixed number of
# executions on its seed corpus (real files from tests/fixtures). Fails on any finding.
# Usage: scripts/fuzz.sh [RUNS_PER_TARGET [MAX_SECONDS_PER_TARGET]]
#   (default 20000 runs, no time cap; the long run uses 1000000, capped with a time if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20000}
max_time=${2:-0}
bash scripts/install-deps.sh --with-fuzz >/dev/null
cmake -S tests/fuzz -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

seed() {  # seed NAME FILES...: a fresh corpus dir holding copies of FILES
  local dir=$work/$1; shift
  mkdir -p "$dir"
  for f in "$@"; do cp "$f" "$dir/$(echo "$f" | tr / _)"; done
  echo "$dir"
}
recipes=$(seed recipe recipes/*.yaml)
printf 'stages.0.prune.target=0.3\nseed=2\n---recipe---\nstages: [prune: {target: {heads: 0.5}}]\n' >"$recipes/with-overrides"
tensors=$(seed safetensors $(find tests/fixtures/models -name '*.safetensors' -size -300k | sort | head -8))
configs=$(seed config tests/fixtures/models/*/config.json tests/fuzz/regressions/config-*.json)
tokenizers=$(seed tokenizer tests/fixtures/tokenizers/*/tokenizer.json tests/fixtures/data/*/tokenizer.json)
# One seed with a text to encode after the marker (see fuzz_tokenizer.cpp).
{ cat tests/fixtures/tokenizers/wordpiece_misc/tokenizer.json; printf '\n---text---\nUnaffable [MASK] caf\xc3\xa9\n'; } >"$tokenizers/with-text"

status=0
for target in recipe safetensors config tokenizer; do
  corpus=$work/$target
  echo "fuzz_$target: $runs runs, seeds: $(ls "$corpus" | wc -l)"
  if ! ./build-fuzz/fuzz_$target -runs="$runs" -max_total_time="$max_time" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$work/crash-$target-" "$corpus" >"$work/$target.log" 2>&1; then
    status=1
    echo "fuzz_$target: FINDING"; tail -40 "$work/$target.log"
    mkdir -p fuzz-findings && cp "$work"/crash-"$target"-* fuzz-findings/ 2>/dev/null || true
  else
    grep -E '^stat::number_of_executed_units|^Done' "$work/$target.log" | tr '\n' ' '; echo
  fi
done
exit $status

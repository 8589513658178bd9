#!/usr/bin/env bash
# Builds the fast test suites with sanitizers (-DSECATEUR_SANITIZE, cmake/secateur.cmake) and
# runs them; any finding fails. Only those test binaries are built, not the whole tree.
# Usage: scripts/sanitize.sh [address|thread]   (default address = AddressSanitizer + UBSan)
#   address  build-asan: util, recipe, report, data (tokenizers, datasets, token cache, batching,
#            the secateur-spm companion) and io (safetensors, sharding) test suites.
#   thread   build-tsan: the torch-free suites (util, recipe, report) and lib/data's worker
#            threads (ParallelTokenize, TokenCache, Spm). LibTorch is not instrumented, so TSan
#            cannot see its synchronisation: tests that run torch ops are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-address}
bash scripts/install-deps.sh >/dev/null
case $kind in
  address)
    dir=build-asan sanitize=address,undefined
    targets=(test_util test_recipe test_report test_data test_io)
    runs=("-L ^(util|recipe|report|data|io)$")
    # LibTorch and libgomp keep allocations alive until exit by design: leaks are not checked.
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ;;
  thread)
    dir=build-tsan sanitize=thread
    targets=(test_util test_recipe test_report test_data)
    runs=("-L ^(util|recipe|report)$" "-L ^data$ -R ^(ParallelTokenize|TokenCache|Spm|Models/SpmFixture)\.")
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ;;
  *) echo "sanitize.sh: expected address or thread, got '$kind'" >&2; exit 2 ;;
esac
# -O1: a sanitized -O0 build runs the tests several times slower; -O2 compiles slower.
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
  -DSECATEUR_SANITIZE="$sanitize" >/dev/null
cmake --build "$dir" --target "${targets[@]}"
for selection in "${runs[@]}"; do
  # shellcheck disable=SC2086  # the selection is split into its ctest options on purpose
  ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" $selection
done

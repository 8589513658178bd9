# Sourced by scripts/results.sh and scripts/results_training_free.sh (not run alone): the one
# helper both use. Expects B (the secateur binary) and OUT (the results directory) to be set.
run() {  # run NAME RECIPE ARGS...: one GPU run into $OUT/NAME, its log kept, failures reported and skipped
  local name=$1 recipe=$2; shift 2
  local t0=$(date +%s)
  if "$B" run "$recipe" --device cuda --out "$OUT/$name" --force "$@" > "$OUT/$name.log" 2>&1; then
    echo "ok   $name ($(( $(date +%s) - t0 )) s)"
  else
    echo "FAIL $name: $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
  fi
}

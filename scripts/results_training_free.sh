#!/usr/bin/env bash
# scripts/results_training_free.sh BUILD_DIR [OUT_DIR] — issue #6's training-free recipes at full
# scale on the trained default models (data/models), on the GPU machine:
#   bash scripts/results_training_free.sh build-gpu results-tf      (a few minutes on one H100)
# Each run is the method's own recipe with --set overrides only: the default model, calibration
# on 128 (encoder: 256) sequences of its own training split instead of the fixture text, its
# first stage replaced by a dense test evaluation and the inspect after pruning by the same
# evaluation (with latency), so every run's report compares pruned with dense.
set -uo pipefail
BUILD=${1:?usage: scripts/results_training_free.sh BUILD_DIR [OUT_DIR]}
OUT=${2:-results-tf}
B="$BUILD/bin/secateur"
mkdir -p "$OUT"

source "$(dirname "$0")/results-run.sh"   # run NAME RECIPE ARGS...

DEC_EVAL='{eval: {split: test, latency: {batch_size: 8, repeats: 20}}}'
DEC=(--set model.path=data/models/kjv_gpt --set data.name=kjv --set data.seq_len=256
     --set 'stages.1.prune.calibration={source: data, num_sequences: 128, seq_len: 256, batch_size: 16}'
     --set "stages.0=$DEC_EVAL" --set "stages.2=$DEC_EVAL")
run flap-0.2 recipes/flap.yaml "${DEC[@]}"
run flap-0.4 recipes/flap.yaml "${DEC[@]}" --set stages.1.prune.target.params=0.4
run amp recipes/amp.yaml "${DEC[@]}"
run shortgpt recipes/shortgpt.yaml "${DEC[@]}"
run shortened_llama recipes/shortened_llama.yaml "${DEC[@]}"
run blockpruner recipes/blockpruner.yaml "${DEC[@]}"
run finercut recipes/finercut.yaml "${DEC[@]}"

ENC_EVAL='{eval: {split: test, latency: {batch_size: 32, repeats: 20}}}'
run sixteen_heads recipes/sixteen_heads.yaml --set model.path=data/models/kjv_bert_cls --set data.name=kjv_testament \
    --set data.tokenizer=data/models/kjv_bert_cls --set data.seq_len=128 \
    --set 'stages.1.prune.calibration={source: data, num_sequences: 256, seq_len: 128, batch_size: 32}' \
    --set 'stages.1.prune.schedule={iterative: {step: 0.1, eval: {split: test}}}' \
    --set "stages.0=$ENC_EVAL" --set "stages.2=$ENC_EVAL"

# One table: each run's dense (first) and pruned (last) evaluation rows, from its own report.md.
for d in "$OUT"/*/; do
  [ -f "$d/report.md" ] || continue
  grep -E '^\| [0-9]+\. eval' "$d/report.md" | sed -n '1p;$p' | sed "s/^| /| $(basename "$d") | /"
done > "$OUT/summary.md"
cat "$OUT/summary.md"

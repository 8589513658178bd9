#!/usr/bin/env bash
# scripts/results.sh BUILD_DIR [OUT_DIR] — the runs behind docs/results.md (issue #7): each
# learned-mask recipe at full scale on secateur's trained default models (data/models), at several
# sparsities, then one merged `secateur report` table per model. On the GPU machine:
#   bash scripts/results.sh build-gpu results      (about 5 minutes on one H100)
# Every run is the method's own recipe with --set overrides only: the default model and its data
# instead of the fixtures, full-scale steps, CUDA, and a test-split evaluation (with latency) as a
# last stage so that each row carries accuracy / perplexity and measured speed.
set -uo pipefail
BUILD=${1:?usage: scripts/results.sh BUILD_DIR [OUT_DIR]}
OUT=${2:-results}
B="$BUILD/bin/secateur"
mkdir -p "$OUT"

source "$(dirname "$0")/results-run.sh"   # run NAME RECIPE ARGS...

# The encoder: data/models/kjv_bert_cls on kjv_testament (Old vs New Testament verse), batch 32.
ENC=(--set model.path=data/models/kjv_bert_cls --set data.name=kjv_testament
     --set data.tokenizer=data/models/kjv_bert_cls/tokenizer.json --set data.seq_len=128 --set data.batch_size=32)
ENC_EVAL='{eval: {split: test, latency: {batch_size: 32, repeats: 20}}}'
# learned RECIPE SPARSITY APPEND_AT [ARGS...]: 600 mask-learning steps on the whole training split,
# the recipe's own later stages, then the test evaluation appended at stage index APPEND_AT.
learned() {
  local recipe=$1 t=$2 at=$3; shift 3
  run "bert-$recipe-$t" "recipes/$recipe.yaml" "${ENC[@]}" --set "stages.0.learn_masks.target_sparsity=$t" \
      --set stages.0.learn_masks.train.steps=600 --set stages.0.learn_masks.train.max_examples=0 \
      --set stages.0.learn_masks.train.eval.max_batches=0 --set stages.0.learn_masks.train.log_every=100 \
      --set "stages.$at=$ENC_EVAL" "$@"
}
FINETUNE=(--set stages.1.train.steps=300 --set stages.1.train.max_examples=0 --set stages.1.train.eval.max_batches=0
          --set stages.1.train.optimizer.lr=5.0e-5)

# Dense rows: the default models evaluated as they ship (the quickstart's protocol).
run bert-dense recipes/quickstart.yaml --set model.path=data/models/kjv_bert_cls --set data.name=kjv_testament \
    --set data.seq_len=128 --set stages.1.eval.latency.batch_size=32 --set stages.1.eval.latency.repeats=20 \
    --set 'stages.2={inspect: {}}' --set 'stages.3={inspect: {}}'
for t in 0.5 0.7 0.9; do
  learned cofi "$t" 3 "${FINETUNE[@]}" --set stages.0.learn_masks.cofi.warmup_steps=200
  learned block_movement "$t" 2 --set stages.0.learn_masks.movement.warmup_steps=100 --set stages.0.learn_masks.movement.cooldown_steps=100
  learned movement "$t" 2 --set stages.0.learn_masks.movement.warmup_steps=100 --set stages.0.learn_masks.movement.cooldown_steps=100
  learned vtrans "$t" 3 "${FINETUNE[@]}" --set stages.0.learn_masks.vib.warmup_steps=200
done

# The decoder: data/models/kjv_gpt on the KJV text, 256-token blocks, batch 16.
DEC=(--set model.path=data/models/kjv_gpt --set data.tokenizer=data/models/kjv_gpt/tokenizer.model
     --set data.seq_len=256 --set data.batch_size=16)
DEC_EVAL='{eval: {split: test, latency: {batch_size: 8, repeats: 20}}}'
run gpt-dense recipes/quickstart.yaml --set stages.1.eval.latency.repeats=20 \
    --set 'stages.2={inspect: {}}' --set 'stages.3={inspect: {}}'
for t in 0.5 0.7; do
  run "gpt-loraprune-$t" recipes/loraprune.yaml "${DEC[@]}" --set "stages.0.learn_masks.target_sparsity=$t" \
      --set stages.0.learn_masks.train.steps=400 --set stages.0.learn_masks.train.max_examples=0 \
      --set stages.0.learn_masks.loraprune.prune_every=50 --set stages.0.learn_masks.loraprune.rank=8 \
      --set stages.0.learn_masks.loraprune.alpha=16 --set stages.0.learn_masks.train.eval.max_batches=0 \
      --set "stages.2=$DEC_EVAL"
done
run gpt-minitron recipes/minitron.yaml "${DEC[@]}" --set stages.0.eval.split=test --set stages.0.eval.max_tokens=0 \
    --set stages.2.train.steps=400 --set stages.2.train.max_examples=0 --set stages.2.train.eval.max_batches=0 \
    --set stages.2.train.log_every=100 --set stages.3.eval.split=test --set stages.3.eval.max_tokens=0 \
    --set stages.2.train.optimizer.lr=3.0e-4

"$B" report "$OUT"/bert-*/ --out "$OUT/bert" > "$OUT/bert.md" 2> "$OUT/report.err"
"$B" report "$OUT"/gpt-*/ --out "$OUT/gpt" > "$OUT/gpt.md" 2>> "$OUT/report.err"
cat "$OUT/bert.md" "$OUT/gpt.md"

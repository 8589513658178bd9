#!/usr/bin/env bash
# scripts/verify-exports.sh BUILD_DIR [OUT_DIR] — issue #6's check that transformers loads
# secateur's pruned exports as-is: (a) secateur prunes and exports a LLaMA (whole KV groups + FFN
# rounded to 8), GPT-2 (FFN only) and a BERT classifier (FFN + a layer), all uniform, and writes
# its logits on fixed inputs to OUT_DIR/logits.json (tests/stages/verify_exports_test.cpp, which
# also checks each export against the masked dense model); (b) tools/verify_export.py loads each
# export with transformers' AutoModelFor... and compares. Run on the GPU machine (torch +
# transformers 5.x); exits non-zero when any export loads wrong or differs beyond 1e-4.
set -euo pipefail
BUILD=${1:?usage: scripts/verify-exports.sh BUILD_DIR [OUT_DIR]}
OUT=$(mkdir -p "${2:-verify-exports}" && cd "${2:-verify-exports}" && pwd)
HERE=$(cd "$(dirname "$0")/.." && pwd)
SECATEUR_VERIFY_OUT="$OUT" "$BUILD/tests/test_stages" --gtest_filter='VerifyExports.*'
"${PYTHON:-python3}" "$HERE/tools/verify_export.py" "$OUT/logits.json" --tolerance "${TOLERANCE:-1e-4}"

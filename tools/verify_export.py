#!/usr/bin/env python3
"""Check that HF transformers loads secateur's pruned exports as-is and reproduces their logits.

Usage (on the GPU machine, which has torch and transformers 5.x):
    python3 tools/verify_export.py LOGITS_JSON [--tolerance 1e-4] [--device cpu|cuda]

LOGITS_JSON is what tests/stages/verify_exports_test.cpp writes (scripts/verify-exports.sh runs
it): the fixed inputs, and for each case the export directory (HF format) and secateur's logits.
Each export is loaded with the AutoModelFor... class its config names (float32, eager attention),
run on the same inputs, and compared at the real (non-padding) positions. Prints one line per case
with the max |difference| and exits 1 when any case exceeds the tolerance or fails to load.
"""
import argparse
import json
import sys


def tensor(spec, torch, dtype):
    return torch.tensor(spec["values"], dtype=dtype).reshape(spec["shape"])


def auto_class(transformers, config):
    arch = (config.architectures or [""])[0]
    if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
        return transformers.AutoModelForCausalLM
    if arch.endswith("ForSequenceClassification"):
        return transformers.AutoModelForSequenceClassification
    if arch.endswith("ForMaskedLM"):
        return transformers.AutoModelForMaskedLM
    return transformers.AutoModel


def compare(case, ids, mask, args, torch, transformers):
    config = transformers.AutoConfig.from_pretrained(case["export"])
    cls = auto_class(transformers, config)
    model = cls.from_pretrained(case["export"], dtype=torch.float32, attn_implementation="eager")
    model.to(args.device).eval()
    with torch.no_grad():
        out = model(input_ids=ids.to(args.device), attention_mask=mask.to(args.device))
    theirs = out.logits.float().cpu()
    ours = tensor(case["logits"], torch, torch.float32)
    if tuple(theirs.shape) != tuple(ours.shape):
        return None, f"shape {tuple(theirs.shape)} vs secateur's {tuple(ours.shape)}"
    diff = (theirs - ours).abs()
    if diff.dim() == 3:  # per-token logits: padding positions are not compared
        diff = diff[mask.bool()]
    return diff.max().item(), cls.__name__


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logits_json")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch
    import transformers

    with open(args.logits_json) as f:
        spec = json.load(f)
    ids = tensor(spec["input_ids"], torch, torch.long)
    mask = tensor(spec["attention_mask"], torch, torch.long)
    failed = 0
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, tolerance {args.tolerance:g}")
    for case in spec["cases"]:
        try:
            diff, note = compare(case, ids, mask, args, torch, transformers)
        except Exception as e:  # a load failure is a finding, not a crash of the check
            diff, note = None, f"{type(e).__name__}: {e}"
        ok = diff is not None and diff <= args.tolerance
        failed += not ok
        shown = "n/a" if diff is None else f"{diff:.3e}"
        print(f"{'OK  ' if ok else 'FAIL'} {case['name']:<24} max|Δlogit| {shown}  ({note})  {case['export']}")
    print(f"{len(spec['cases']) - failed}/{len(spec['cases'])} exports reproduce secateur's logits")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

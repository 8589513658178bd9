#!/usr/bin/env python3
"""Turns the JSON lines of bench/run.sh into one Markdown table of absolute figures and ratios
(secateur / HF), taking the median over the repeated rounds of each (system, case, pruned).

usage: compare.py results.jsonl > table.md
"""
import json
import statistics
import sys
from collections import defaultdict

METRIC = {"bert_train": "samples_per_s", "bert_infer": "samples_per_s", "llama_eval": "tokens_per_s",
          "calibration": "seconds", "grad_importance": "seconds"}
LOWER_IS_BETTER = {"seconds"}


def load(path):
    rows = defaultdict(list)
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        case = r.get("case") or f'{r.get("bench", "?")}:{r.get("estimator", "")}'  # calibration_bench
        if "peak_cuda_bytes" in r and "peak_mem_gb" not in r:
            r["peak_mem_gb"] = r["peak_cuda_bytes"] / 2**30
        rows[(case, bool(r.get("pruned", False)), r.get("system", "secateur"))].append(r)
    return rows


def med(rs, key):
    vals = [r[key] for r in rs if key in r]
    return statistics.median(vals) if vals else None


def fmt(x, digits=1):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if abs(x) >= 1 else f"{x:.3f}"


def main():
    rows = load(sys.argv[1])
    cases = sorted({(c, p) for c, p, _ in rows})
    out = ["| case | shape | system | rounds | throughput / time | MFU | peak GB | secateur ÷ this |",
           "|---|---|---|---|---|---|---|---|"]
    for case, pruned in cases:
        key = METRIC.get(case.split(":")[0], "seconds")
        ours = med(rows.get((case, pruned, "secateur"), []), key)
        for system in sorted({s for c, p, s in rows if (c, p) == (case, pruned)}, key=lambda s: s != "secateur"):
            rs = rows[(case, pruned, system)]
            value = med(rs, key)
            ratio = None
            if ours is not None and value and system != "secateur":
                ratio = value / ours if key in LOWER_IS_BETTER else ours / value
            mfu = med(rs, "mfu")
            out.append(f"| {case} | {'pruned' if pruned else 'dense'} | {system} | {len(rs)} | "
                       f"{fmt(value)} {key.replace('_per_s', '/s')} | {fmt(mfu * 100) + '%' if mfu else '–'} | "
                       f"{fmt(med(rs, 'peak_mem_gb'))} | {fmt(ratio, 2) + '×' if ratio else ''} |")
    # Pruned / dense speedups, per system.
    out += ["", "| case | system | pruned ÷ dense throughput |", "|---|---|---|"]
    for case in sorted({c for c, _ in cases}):
        key = METRIC.get(case, "seconds")
        for system in sorted({s for c, _, s in rows if c == case}):
            dense, pruned = med(rows.get((case, False, system), []), key), med(rows.get((case, True, system), []), key)
            if dense and pruned and key not in LOWER_IS_BETTER:
                out.append(f"| {case} | {system} | {pruned / dense:.2f}× |")
    print("\n".join(out))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summarise a Chrome trace from `speed_bench ... --profile TRACE.json` (or torch.profiler):
GPU kernel time per kernel (grouped by a short name), the share of the profiled wall time the GPU
was busy, and kernel launches per step — whether a step is bound by the GPU's work or by launches.

    python3 bench/profile_summary.py TRACE.json [--steps N] [--top 25]
"""
import argparse
import collections
import json
import re


def short(name):
    # cuBLAS/CUTLASS template names are long; keep what identifies the kernel family.
    name = re.sub(r"<.*", "", name)
    name = re.sub(r"\(.*", "", name)
    return name[:90]


def op_table(events, kernels):
    """Kernel time by the innermost aten op that launched it (kernel → runtime call by correlation
    id → the cpu_op enclosing that call on the same thread), with the op's input shapes."""
    runtime = {e["args"]["correlation"]: e for e in events
               if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})}
    ops = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "cpu_op" and "dur" in e:
            ops[e["tid"]].append(e)
    for lst in ops.values():
        lst.sort(key=lambda e: e["ts"])
    table = collections.defaultdict(lambda: [0.0, 0])
    for k in kernels:
        r = runtime.get(k.get("args", {}).get("correlation"))
        label = "(no op)"
        if r is not None:
            inner = None
            for op in ops.get(r["tid"], []):
                if op["ts"] > r["ts"]:
                    break
                if op["ts"] + op["dur"] >= r["ts"] + r.get("dur", 0) and (inner is None or op["dur"] <= inner["dur"]):
                    inner = op
            if inner is not None:
                dims = inner.get("args", {}).get("Input Dims")
                label = inner["name"] + (" " + json.dumps(dims, separators=(",", ":")) if dims else "")
        t = table[label[:140]]
        t[0] += k["dur"]
        t[1] += 1
    return table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--steps", type=int, default=3, help="steps in the trace (speed_bench --profile-steps)")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    events = json.load(open(a.trace))["traceEvents"]
    kernels = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e]
    if not kernels:
        print("no GPU kernels in", a.trace)
        return
    per = collections.defaultdict(lambda: [0.0, 0])
    for e in kernels:
        p = per[short(e["name"])]
        p[0] += e["dur"]
        p[1] += 1
    busy = sum(e["dur"] for e in kernels)
    start = min(e["ts"] for e in kernels)
    end = max(e["ts"] + e["dur"] for e in kernels)
    span = end - start
    print(f"{len(kernels) / a.steps:.0f} kernels per step; GPU busy {busy / a.steps / 1e3:.2f} ms of "
          f"{span / a.steps / 1e3:.2f} ms per step ({100 * busy / span:.1f}%)")
    print()
    by_op = op_table(events, kernels)
    if by_op:
        print("| aten op (input shapes) | ms/step | share | kernels/step |")
        print("|---|---:|---:|---:|")
        for name, (dur, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0])[: a.top]:
            print(f"| `{name}` | {dur / a.steps / 1e3:.3f} | {100 * dur / busy:.1f}% | {n / a.steps:.0f} |")
        print()
    print("| kernel | ms/step | share | calls/step |")
    print("|---|---:|---:|---:|")
    for name, (dur, n) in sorted(per.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"| `{name}` | {dur / a.steps / 1e3:.3f} | {100 * dur / busy:.1f}% | {n / a.steps:.0f} |")


if __name__ == "__main__":
    main()

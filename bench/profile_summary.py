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
    print("| kernel | ms/step | share | calls/step |")
    print("|---|---:|---:|---:|")
    for name, (dur, n) in sorted(per.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"| `{name}` | {dur / a.steps / 1e3:.3f} | {100 * dur / busy:.1f}% | {n / a.steps:.0f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""How far the analytical fast path is from the event simulation, per plan.

The analytical estimate (sim/analytical.h) replays the compute and pipeline
streams of one replica with every collective and transfer at its
uncontended time; the event simulation (sim/iteration.h) runs every rank
and every link with the traffic sharing links max-min. Where nothing
contends the two agree (tests/sim/analytical_test.cc holds them within 2%);
this script measures the gap elsewhere: for each plan it runs

    orrery simulate ... --analytical --format json

and prints the simulated and the analytical iteration time, the gap
(analytical − simulated) / simulated, and the mean and the largest |gap|.
README.md says what each plan exercises. Python 3 standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# (name, what it exercises, orrery simulate arguments)
PLANS = [
    ("pp2-tp8", "control: PP over 2 nodes, TP in a node, dp 1 (one flow per NIC)",
     "--model gpt-1.7b --cluster dgx-a100-80gb --nodes 2 --tp 8 --pp 2 --micro-batch 1 "
     "--global-batch 16"),
    ("tp8-dp2", "control: DP rings alone on the NICs, TP in a node",
     "--model gpt-1.7b --cluster dgx-a100-80gb --nodes 2 --tp 8 --dp 2 --micro-batch 2 "
     "--global-batch 32"),
    ("dp-nics", "DP across nodes sharing the NICs with pipeline sends",
     "--model gpt-7.5b --cluster dgx-a100-80gb --nodes 4 --tp 8 --pp 2 --dp 2 --micro-batch 1 "
     "--global-batch 32"),
    ("dp-heavy", "DP 32 over 4 nodes, TP 1: one ring through all 32 ranks",
     "--model gpt-1.7b --cluster dgx-a100-80gb --nodes 4 --tp 1 --dp 32 --micro-batch 2 "
     "--global-batch 128"),
    ("tp-nodes", "TP 16 across two nodes: TP all-reduces on the NICs",
     "--model gpt-18b --cluster dgx-a100-80gb --nodes 2 --tp 16 --micro-batch 1 "
     "--global-batch 4 --recompute full"),
    ("pp-heavy", "PP 8 over 8 nodes: each NIC receives activations and gradients",
     "--model gpt-39b --cluster dgx-a100-80gb --nodes 8 --tp 8 --pp 8 --micro-batch 1 "
     "--global-batch 32 --recompute full"),
    ("interleaved", "interleaved 1F1B (vpp 3), PP 4 × DP 2 over 8 nodes",
     "--model gpt-39b --cluster dgx-a100-80gb --nodes 8 --tp 8 --pp 4 --dp 2 "
     "--schedule interleaved --vpp 3 --micro-batch 1 --global-batch 32 --recompute full"),
    ("pp-in-node", "PP 4 × TP 2 inside each node, DP 2 across nodes",
     "--model gpt-7.5b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 --dp 2 --micro-batch 1 "
     "--global-batch 32 --sequence-parallel"),
    ("shared-nic", "PCIe L40S nodes, one NIC per 2 GPUs: DP rings and sends share NICs",
     "--model gpt-1.7b --cluster pcie-l40s-8 --nodes 2 --tp 2 --pp 2 --dp 4 --micro-batch 1 "
     "--global-batch 32"),
    ("zero1", "ZeRO-1 (distributed optimizer), DP 4 across nodes",
     "--model llama2-13b --cluster dgx-h100 --nodes 4 --tp 4 --pp 2 --dp 4 --zero 1 "
     "--micro-batch 1 --global-batch 32 --sequence-parallel --recompute selective"),
    ("zero3", "ZeRO-3: per-layer gathers and reduce-scatters over DP 8 across nodes",
     "--model gpt-7.5b --cluster dgx-a100-80gb --nodes 2 --tp 2 --dp 8 --zero 3 "
     "--micro-batch 1 --global-batch 16 --recompute full"),
    ("cp", "context parallel 2 × TP 4, DP 2: the KV all-gathers beside DP",
     "--model llama3-8b --cluster dgx-h100 --nodes 2 --tp 4 --cp 2 --dp 2 --micro-batch 1 "
     "--global-batch 8 --seq-len 16384 --sequence-parallel --recompute selective"),
    ("moe-ep", "Mixtral 8x7B, EP 8 all-to-alls across nodes, PP 2",
     "--model mixtral-8x7b --cluster dgx-h100 --nodes 4 --tp 2 --pp 2 --ep 8 --dp 8 "
     "--micro-batch 1 --global-batch 32 --seq-len 4096 --sequence-parallel "
     "--recompute full"),
    ("gpt3-1024", "GPT-3 175B on 1,024 A100, TP8 PP8 DP16 interleaved (sim-scaling case a)",
     "--model gpt3-175b --cluster dgx-a100-80gb --nodes 128 --tp 8 --pp 8 --dp 16 "
     "--schedule interleaved --vpp 2 --micro-batch 1 --global-batch 1536 --recompute full"),
]


def run_plan(binary, plan, extra, timeout):
    name, what, args = plan
    cmd = [binary, "simulate"] + args.split() + extra + ["--analytical", "--format", "json"]
    res = {"plan": name, "what": what, "command": " ".join(cmd)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        res["error"] = "timed out after %d s" % timeout
        return res
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        res["error"] = "exit %d: %s" % (proc.returncode, " | ".join(lines[-2:]) or "?")
        return res
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        res["error"] = "output is not JSON"
        return res
    analytical = report.get("analytical")
    if not isinstance(analytical, dict):
        res["error"] = "no 'analytical' key (a binary without --analytical?)"
        return res
    res.update(simulated_s=report["iteration_time_s"],
               analytical_s=analytical["iteration_time_s"], gap=analytical["gap"],
               devices=report.get("devices"), bound_stage=report.get("bound_stage"),
               exposed_comm_s=report.get("breakdown", {}).get("exposed_comm_s"))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get("ORRERY_BINARY")
                    or str(REPO_ROOT / "build" / "cli" / "orrery"),
                    help="orrery binary ($ORRERY_BINARY, else build/cli/orrery)")
    ap.add_argument("--jobs", type=int, default=1, help="simulations run at once (default 1)")
    ap.add_argument("--only", action="append", metavar="PLAN",
                    help="run only this plan (repeatable); names as in the table")
    ap.add_argument("--overlap-slowdown", type=float, metavar="F",
                    help="pass --overlap-slowdown F to every run")
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds before a run is killed (default 600)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    args = ap.parse_args()
    if not (os.path.isfile(args.binary) and os.access(args.binary, os.X_OK)):
        sys.exit("orrery binary not found: %s (build it, or set $ORRERY_BINARY / --binary)"
                 % args.binary)
    plans = PLANS
    if args.only:
        unknown = set(args.only) - {p[0] for p in PLANS}
        if unknown:
            sys.exit("unknown plan(s): %s" % ", ".join(sorted(unknown)))
        plans = [p for p in PLANS if p[0] in args.only]
    extra = []
    if args.overlap_slowdown is not None:
        extra = ["--overlap-slowdown", repr(args.overlap_slowdown)]

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda p: run_plan(args.binary, p, extra, args.timeout), plans))

    out = sys.stdout
    out.write("Analytical estimate vs event simulation (%s%s)\n\n" % (
        args.binary, ", overlap slowdown %g" % args.overlap_slowdown
        if args.overlap_slowdown is not None else ""))
    out.write("%-12s %8s %12s %12s %9s   %s\n" % (
        "plan", "devices", "simulated s", "analytical s", "gap", "what it exercises"))
    gaps = []
    for r in results:
        if "error" in r:
            out.write("%-12s FAILED: %s\n" % (r["plan"], r["error"]))
            continue
        gaps.append(abs(r["gap"]))
        out.write("%-12s %8s %12.4f %12.4f %+8.2f%%   %s\n" % (
            r["plan"], r.get("devices", "?"), r["simulated_s"], r["analytical_s"],
            100 * r["gap"], r["what"]))
    if gaps:
        out.write("\n%d plans: mean |gap| %.2f%%, max |gap| %.2f%%\n" % (
            len(gaps), 100 * sum(gaps) / len(gaps), 100 * max(gaps)))
    failed = [r["plan"] for r in results if "error" in r]
    if failed:
        out.write("failed: %s\n" % ", ".join(failed))
    if args.json:
        Path(args.json).write_text(json.dumps({"binary": args.binary, "results": results},
                                              indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How close the calibrated simulator is to the executor, per plan.

On this machine (the `cpu-local` cluster: one rank per core, Eigen + MPI),
the script

  1. profiles once, on the ranks it will predict:
       mpirun -np 2 orrery profile --backend cpu --model gpt-tiny --tp 1,2
                                   --micro-batch 2 --out DIR/profile
  2. calibrates the cluster from that profile alone:
       orrery calibrate --cluster cpu-local --from DIR/profile --out DIR/calibrated.json
  3. for every plan below, runs the executor and the simulator on the same
     plan with that calibration (never on the runs being predicted):
       orrery validate --model gpt-tiny <plan> --backend cpu --ranks 2
                       --calibration DIR/calibrated.json --format json

and prints per plan the predicted and the measured (median) iteration time
and the error (predicted − measured) / measured, then the error
distribution (mean |error|, median, largest) and, for every pair of plans
whose measured times differ by more than 10%, whether the simulator orders
them the same way. --repeats N measures every plan N times (fresh
executions, same calibration) so the distribution also shows the run-to-run
noise. Python 3 standard library only.
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

MODEL = "gpt-tiny"
MICRO_BATCH = 2
GLOBAL_BATCH = 16

# (name, orrery plan flags). The first four are the issue's; the rest widen
# the distribution over the layouts the executor runs.
PLANS = [
    ("dp2", "--dp 2"),
    ("tp2", "--tp 2"),
    ("pp2-1f1b", "--pp 2 --schedule 1f1b"),
    ("zero3-dp2", "--dp 2 --zero 3"),
    ("tp2-sp", "--tp 2 --sequence-parallel"),
    ("pp2-gpipe", "--pp 2 --schedule gpipe"),
    ("zero1-dp2", "--dp 2 --zero 1"),
    ("dp2-recompute", "--dp 2 --recompute full"),
]


def binary_path():
    env = os.environ.get("ORRERY_BINARY")
    if env:
        return env
    return str(REPO_ROOT / "build" / "cli" / "orrery")


def mpirun(ranks):
    cmd = ["mpirun", "-np", str(ranks)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if ranks > (os.cpu_count() or 1):
        cmd.append("--oversubscribe")
    return cmd


def run(cmd, timeout):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}")
    return res.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=10,
                    help="timed executor iterations per plan (the median is compared)")
    ap.add_argument("--repeats", type=int, default=1, help="executions per plan")
    ap.add_argument("--plans", default="", help="comma-separated subset of plan names")
    ap.add_argument("--dir", default="", help="keep the profile and calibration here")
    ap.add_argument("--json", default="", help="write the results as JSON here")
    args = ap.parse_args()

    binary = binary_path()
    if not Path(binary).exists():
        raise SystemExit(f"{binary}: not found (build it, or set ORRERY_BINARY)")
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="orrery-calibration-"))
    work.mkdir(parents=True, exist_ok=True)
    plans = PLANS
    if args.plans:
        wanted = set(args.plans.split(","))
        plans = [p for p in PLANS if p[0] in wanted]

    profile = work / "profile"
    calibrated = work / "calibrated.json"
    print(f"# profiling {MODEL} on {args.ranks} ranks (tp 1,2; micro-batch {MICRO_BATCH})",
          file=sys.stderr)
    run(mpirun(args.ranks) + [binary, "profile", "--backend", "cpu", "--model", MODEL,
                              "--tp", "1,2", "--micro-batch", str(MICRO_BATCH),
                              "--max-bytes", "4M", "--out", str(profile)], timeout=900)
    run([binary, "calibrate", "--cluster", "cpu-local", "--from", str(profile),
         "--out", str(calibrated)], timeout=300)

    rows = []
    for (name, flags), rep in itertools.product(plans, range(args.repeats)):
        print(f"# {name} (run {rep + 1} of {args.repeats})", file=sys.stderr)
        out = run([binary, "validate", "--model", MODEL, "--backend", "cpu",
                   "--ranks", str(args.ranks), "--calibration", str(calibrated),
                   "--micro-batch", str(MICRO_BATCH), "--global-batch", str(GLOBAL_BATCH),
                   "--iterations", str(args.iterations), "--format", "json"] + flags.split(),
                  timeout=900)
        report = json.loads(out)
        rows.append({"plan": name, "flags": flags, "run": rep,
                     "predicted_s": report["predicted_iteration_time_s"],
                     "measured_s": report["measured_iteration_time_s"],
                     "error": report["error"]})

    print(f"Calibrated on `orrery profile` only; {MODEL}, micro-batch {MICRO_BATCH}, "
          f"global batch {GLOBAL_BATCH}, {args.ranks} ranks, median of {args.iterations} "
          f"iterations\n")
    print(f"{'plan':<16}{'predicted ms':>14}{'measured ms':>14}{'error':>9}")
    for r in rows:
        print(f"{r['plan']:<16}{r['predicted_s'] * 1e3:>14.1f}{r['measured_s'] * 1e3:>14.1f}"
              f"{r['error'] * 100:>8.1f}%")
    errors = [abs(r["error"]) for r in rows]
    print(f"\n|error| over {len(errors)} runs: mean {statistics.mean(errors) * 100:.1f}%, "
          f"median {statistics.median(errors) * 100:.1f}%, largest {max(errors) * 100:.1f}%; "
          f"within 15%: {sum(e <= 0.15 for e in errors)} of {len(errors)}")

    # Ordering: per plan, the mean over repeats.
    by_plan = {}
    for r in rows:
        by_plan.setdefault(r["plan"], []).append(r)
    means = {p: (statistics.mean(x["predicted_s"] for x in rs),
                 statistics.mean(x["measured_s"] for x in rs)) for p, rs in by_plan.items()}
    pairs, agree = 0, 0
    disagreements = []
    for a, b in itertools.combinations(means, 2):
        pa, ma = means[a]
        pb, mb = means[b]
        if abs(ma - mb) / min(ma, mb) <= 0.10:
            continue
        pairs += 1
        if (pa < pb) == (ma < mb):
            agree += 1
        else:
            disagreements.append(f"{a} vs {b}")
    print(f"ordering: {agree} of {pairs} pairs whose measured times differ by more than 10% "
          f"are ordered the same by the simulator"
          + (f" (not: {', '.join(disagreements)})" if disagreements else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "pairs": pairs, "agree": agree},
                                              indent=2) + "\n")
    print(f"\n(profile and calibration in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()

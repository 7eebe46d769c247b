#!/usr/bin/env python3
"""How close the calibrated simulator is to the executor, per plan.

On this machine (the `cpu-local` cluster: one rank per core, Eigen + MPI),
the script

runs --repeats rounds (default 5), each of which

  1. profiles, on the ranks it will predict:
       mpirun -np 2 orrery profile --backend cpu --model gpt-tiny --tp 1,2
                                   --micro-batch 2 --out DIR/profile<r>
  2. calibrates the cluster on the profiler runs so far (repeated runs are
     merged by their median, costmodel::Calibrate):
       orrery calibrate --cluster cpu-local --from DIR/profile1 ... --out DIR/calibrated.json
  3. runs every plan below once with the executor, and the simulator on the
     same plan with that calibration (never on the runs being predicted):
       orrery validate --model gpt-tiny <plan> --backend cpu --ranks 2
                       --calibration DIR/calibrated.json --format json

The profiler runs are spread over the same minutes as the executions: on a
shared machine a whole minute can run 10-20% slower than the next. Each
plan's prediction is the last round's (calibrated on every profiler run).
The script prints per execution the prediction, the measured (median)
iteration time and the error (predicted − measured) / measured; per plan
the median of its executions and that error (the acceptance check's
figure, tests/calibration/accuracy_test.cc); the error distribution (mean
|error|, median, largest); and, for every pair of plans whose measured
medians differ by more than 10%, whether the simulator orders them the same
way. Python 3 standard library only.
"""

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from orrery_run import binary_path, mpirun, run  # noqa: E402

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





def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=10,
                    help="timed executor iterations per plan (the median is compared)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="rounds: profiler runs, and executions per plan")
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

    profiles = []
    calibrated = work / "calibrated.json"
    measured = {name: [] for name, _ in plans}
    predicted = {}
    for rep in range(args.repeats):
        profile = work / f"profile{rep + 1}"
        print(f"# round {rep + 1} of {args.repeats}: profiling {MODEL} on {args.ranks} ranks "
              f"(tp 1,2; micro-batch {MICRO_BATCH})", file=sys.stderr)
        run(mpirun(args.ranks) + [binary, "profile", "--backend", "cpu", "--model", MODEL,
                                  "--tp", "1,2", "--micro-batch", str(MICRO_BATCH),
                                  "--max-bytes", "4M", "--out", str(profile)], timeout=900)
        profiles.append(str(profile))
        run([binary, "calibrate", "--cluster", "cpu-local", "--from"] + profiles +
            ["--out", str(calibrated)], timeout=300)
        for name, flags in plans:
            print(f"# round {rep + 1}: {name}", file=sys.stderr)
            out = run([binary, "validate", "--model", MODEL, "--backend", "cpu",
                       "--ranks", str(args.ranks), "--calibration", str(calibrated),
                       "--micro-batch", str(MICRO_BATCH), "--global-batch", str(GLOBAL_BATCH),
                       "--iterations", str(args.iterations), "--format", "json"] + flags.split(),
                      timeout=900)
            report = json.loads(out)
            measured[name].append(report["measured_iteration_time_s"])
            predicted[name] = report["predicted_iteration_time_s"]  # the last round's wins

    rows = []
    for name, flags in plans:
        for rep, m in enumerate(measured[name]):
            rows.append({"plan": name, "flags": flags, "run": rep, "predicted_s": predicted[name],
                         "measured_s": m, "error": (predicted[name] - m) / m})

    print(f"Calibrated on {args.repeats} `orrery profile` runs only; {MODEL}, micro-batch "
          f"{MICRO_BATCH}, global batch {GLOBAL_BATCH}, {args.ranks} ranks, median of "
          f"{args.iterations} iterations per execution\n")
    print(f"{'plan':<16}{'predicted ms':>14}{'measured ms':>14}{'error':>9}")
    for r in rows:
        print(f"{r['plan']:<16}{r['predicted_s'] * 1e3:>14.1f}{r['measured_s'] * 1e3:>14.1f}"
              f"{r['error'] * 100:>8.1f}%")
    medians = {name: statistics.median(ms) for name, ms in measured.items()}
    print(f"\nper plan, the median of its {args.repeats} executions:")
    print(f"{'plan':<16}{'predicted ms':>14}{'measured ms':>14}{'error':>9}")
    plan_errors = {}
    for name, _ in plans:
        plan_errors[name] = (predicted[name] - medians[name]) / medians[name]
        print(f"{name:<16}{predicted[name] * 1e3:>14.1f}{medians[name] * 1e3:>14.1f}"
              f"{plan_errors[name] * 100:>8.1f}%")
    within = sum(abs(e) <= 0.15 for e in plan_errors.values())
    print(f"plans within 15%: {within} of {len(plan_errors)}")
    errors = [abs(r["error"]) for r in rows]
    print(f"\n|error| over {len(errors)} executions: mean {statistics.mean(errors) * 100:.1f}%, "
          f"median {statistics.median(errors) * 100:.1f}%, largest {max(errors) * 100:.1f}%; "
          f"within 15%: {sum(e <= 0.15 for e in errors)} of {len(errors)}")

    # Ordering: per plan, the prediction and the median of the executions.
    means = {p: (predicted[p], medians[p]) for p in medians}
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
        Path(args.json).write_text(json.dumps({"rows": rows, "plan_errors": plan_errors,
                                               "pairs": pairs, "agree": agree},
                                              indent=2) + "\n")
    print(f"\n(profiles and calibration in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A straggler, injected in the executor and predicted by the simulator.

On this machine (the `cpu-local` cluster: one rank per core, Eigen + MPI),
the script

  1. profiles gpt-tiny on 2 ranks and calibrates the cluster on it
     (as experiments/calibration/run.py does, one round):
       mpirun -np 2 orrery profile --backend cpu --model gpt-tiny --tp 1,2
                                   --micro-batch 2 --out DIR/profile
       orrery calibrate --cluster cpu-local --from DIR/profile --out DIR/calibrated.json
  2. for every plan and slowdown factor f, --rounds times, runs the plan
     healthy and with rank 1 slowed (every compute operator of rank 1 takes
     f times as long, exec/op_recorder.h):
       mpirun -np 2 orrery execute --model gpt-tiny <plan> --format json
       mpirun -np 2 orrery execute --model gpt-tiny <plan> --slow-rank 1:f --format json
     and asks the simulator, with the calibration, for the same straggler:
       orrery simulate --model gpt-tiny --cluster DIR/calibrated.json <plan>
                       --slow-device 1:f --format json

It prints, per plan and factor, the measured slowdown (the median of the
slowed runs' median step over the median of the healthy runs') beside the
simulator's (faulted iteration over healthy). Healthy and slowed runs
alternate so that the machine's drift touches both alike. Python 3
standard library only.
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from orrery_run import binary_path, mpirun, run  # noqa: E402

MODEL = "gpt-tiny"
COMMON = ["--global-batch", "16", "--micro-batch", "2"]
PLANS = [
    ("dp2", ["--dp", "2"]),
    ("tp2", ["--tp", "2"]),
    ("pp2-1f1b", ["--pp", "2", "--schedule", "1f1b"]),
]
FACTORS = [1.5, 2.0]





def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="healthy/slowed pairs per plan and factor")
    ap.add_argument("--iterations", type=int, default=10, help="timed steps per execution")
    ap.add_argument("--dir", default="", help="keep the profile and calibration here")
    args = ap.parse_args()
    binary = binary_path()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="orrery-faults-"))
    work.mkdir(parents=True, exist_ok=True)

    print(f"# profiling {MODEL} on 2 ranks, calibrating cpu-local", file=sys.stderr)
    run(mpirun(2) + [binary, "profile", "--backend", "cpu", "--model", MODEL, "--tp", "1,2",
                     "--micro-batch", "2", "--max-bytes", "4M", "--out", str(work / "profile")],
        timeout=900)
    calibrated = work / "calibrated.json"
    run([binary, "calibrate", "--cluster", "cpu-local", "--from", str(work / "profile"),
         "--out", str(calibrated)])

    def execute(flags, slow):
        cmd = mpirun(2) + [binary, "execute", "--model", MODEL, "--backend", "cpu",
                           "--iterations", str(args.iterations), "--warmup", "1",
                           "--format", "json"] + COMMON + flags
        if slow:
            cmd += ["--slow-rank", f"1:{slow:g}"]
        return json.loads(run(cmd))["iteration_time_s"]["median"]

    rows = []
    for name, flags in PLANS:
        for f in FACTORS:
            print(f"# {name}, rank 1 at {f:g}x", file=sys.stderr)
            healthy, slowed = [], []
            for _ in range(args.rounds):
                healthy.append(execute(flags, None))
                slowed.append(execute(flags, f))
            sim = json.loads(run([binary, "simulate", "--model", MODEL, "--cluster",
                                  str(calibrated), "--slow-device", f"1:{f:g}",
                                  "--precision", "fp32", "--format", "json"] + COMMON + flags))
            faults = sim["faults"]
            measured = statistics.median(slowed) / statistics.median(healthy)
            rows.append((name, f, statistics.median(healthy), statistics.median(slowed),
                         measured, faults["baseline_iteration_time_s"],
                         faults["iteration_time_s"],
                         faults["iteration_time_s"] / faults["baseline_iteration_time_s"]))

    print(f"{MODEL}, global batch 16, micro-batch 2, on 2 ranks of this machine; rank 1 slowed "
          f"(--slow-rank / --slow-device 1:f); {args.rounds} healthy/slowed pairs of "
          f"{args.iterations} timed steps each, medians\n")
    print(f"{'plan':<10} {'f':>4}  {'measured ms':>19}  {'slowdown':>8}  "
          f"{'simulated ms':>19}  {'slowdown':>8}  {'difference':>10}")
    for name, f, h, s, m, sh, ss, sd in rows:
        print(f"{name:<10} {f:>4g}  {h * 1e3:>8.1f} → {s * 1e3:>8.1f}  {m:>8.3f}  "
              f"{sh * 1e3:>8.1f} → {ss * 1e3:>8.1f}  {sd:>8.3f}  {(sd - m) / m:>+10.1%}")
    print(f"\n(profile and calibration in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()

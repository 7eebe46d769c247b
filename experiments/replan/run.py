#!/usr/bin/env python3
"""A straggler met at run time: a fixed plan against `execute --replan`.

On this machine (the `cpu-local` cluster: one rank per core, Eigen + MPI),
the script

  1. profiles gpt-tiny on 2 ranks and calibrates the cluster on it:
       mpirun -np 2 orrery profile --backend cpu --model gpt-tiny --tp 1,2
                                   --micro-batch 1,2,4 --seq-len 32 --out DIR/profile
       orrery calibrate --cluster cpu-local --model gpt-tiny --from DIR/profile
                        --out DIR/calibrated.json
  2. for every slowdown factor f of rank 1 (1 = healthy), --rounds times,
     trains --steps steps of data parallelism (dp 2, the healthy optimum
     here) twice, alternating:
       fixed:  mpirun -np 2 orrery execute --model gpt-tiny --dp 2 <batch>
                      --iterations STEPS --warmup 0 [--slow-rank 1:f]
       replan: mpirun -np 2 orrery execute --model gpt-tiny --dp 2 <batch>
                      --iterations STEPS --replan 0.2 --replan-window W
                      --cluster DIR/calibrated.json [--slow-rank 1:f]

It prints, per factor, the medians over rounds of: the training time (the
sum of every step's time, plus every switch's for the re-planned run), the
wall time of the whole command (process start, the probe and the searches
included), the plan the re-planned run ended with and what its decisions
said. Python 3 standard library only.
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from orrery_run import binary_path, mpirun, run, run_timed  # noqa: E402

MODEL = "gpt-tiny"
BATCH = ["--global-batch", "8", "--seq-len", "32"]
FACTORS = [1.0, 2.0, 3.0]





def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="fixed/replan pairs per factor")
    ap.add_argument("--steps", type=int, default=40, help="training steps per run")
    ap.add_argument("--window", type=int, default=5, help="--replan-window")
    ap.add_argument("--margin", type=float, default=0.2, help="--replan")
    ap.add_argument("--dir", default="", help="keep the profile and calibration here")
    args = ap.parse_args()
    binary = binary_path()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="orrery-replan-"))
    work.mkdir(parents=True, exist_ok=True)

    print(f"# profiling {MODEL} on 2 ranks, calibrating cpu-local", file=sys.stderr)
    run(mpirun(2) + [binary, "profile", "--backend", "cpu", "--model", MODEL, "--tp", "1,2",
                     "--micro-batch", "1,2,4", "--seq-len", "32",
                     "--out", str(work / "profile")])
    calibrated = work / "calibrated.json"
    run([binary, "calibrate", "--cluster", "cpu-local", "--model", MODEL,
         "--from", str(work / "profile"), "--out", str(calibrated), "--format", "json"])

    base = mpirun(2) + [binary, "execute", "--model", MODEL, "--dp", "2"] + BATCH + [
        "--backend", "cpu", "--iterations", str(args.steps), "--format", "json"]
    rows = []
    for f in FACTORS:
        slow = [] if f == 1.0 else ["--slow-rank", f"1:{f:g}"]
        fixed_train, fixed_wall, replan_train, replan_wall = [], [], [], []
        finals, decisions = [], []
        for r in range(args.rounds):
            print(f"# factor {f:g}, round {r + 1}/{args.rounds}", file=sys.stderr)
            out, wall = run_timed(base + ["--warmup", "0"] + slow)
            report = json.loads(out)
            fixed_train.append(sum(report["iteration_time_s"]["samples"]))
            fixed_wall.append(wall)
            out, wall = run_timed(base + ["--replan", f"{args.margin:g}", "--replan-window",
                                    str(args.window), "--cluster", str(calibrated)] + slow)
            report = json.loads(out)
            train = sum(sum(w["step_s"]) for w in report["windows"])
            train += sum(s["total_s"] for s in report["switches"])
            replan_train.append(train)
            replan_wall.append(wall)
            last = report["windows"][-1]["plan"]
            finals.append(last)
            decisions.append("; ".join(
                f"w{d['window']} {'switch' if d['switch_plan'] else 'keep'}"
                f" (rank 1 x{d['factors'][1]:.2f})" for d in report["decisions"]) or "none")
        rows.append((f, statistics.median(fixed_train), statistics.median(replan_train),
                     statistics.median(fixed_wall), statistics.median(replan_wall),
                     finals, decisions))

    print(f"{MODEL}, dp 2, global batch 8 x 32 tokens, {args.steps} steps on 2 ranks; "
          f"rank 1 slowed by f (--slow-rank 1:f); --replan {args.margin:g}, windows of "
          f"{args.window}; medians of {args.rounds} rounds")
    print()
    print(f"{'f':>4}  {'fixed train s':>13}  {'replan train s':>14}  {'saving':>7}  "
          f"{'fixed wall s':>12}  {'replan wall s':>13}  final plans / decisions")
    for f, ft, rt, fw, rw, finals, decisions in rows:
        print(f"{f:>4g}  {ft:>13.3f}  {rt:>14.3f}  {100 * (ft - rt) / ft:>+6.1f}%  "
              f"{fw:>12.2f}  {rw:>13.2f}  {', '.join(sorted(set(finals)))}")
        for d in decisions:
            print(f"{'':>70}{d}")


if __name__ == "__main__":
    main()

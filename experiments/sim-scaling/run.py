#!/usr/bin/env python3
"""How fast `orrery simulate` is at full scale: wall time, events, peak RSS.

Two runs (issue #5, "Speed"), every rank and every link simulated:

  a  GPT-3 175B on 1,024 A100 (dgx-a100-80gb, 128 nodes): TP8 PP8 DP16,
     interleaved 1F1B, global batch 1536, micro-batch 1, sequence 2048,
     full recomputation.            Target: under 5 s, under 8 GiB.
  b  Llama-3-405B on 16,384 H100 (dgx-h100, 2048 nodes): TP8 PP16 DP128,
     sequence 8192, global batch 2048, micro-batch 1, sequence parallel,
     1F1B.                          Target: under 60 s, under 8 GiB.

Peak RSS is the child's own ru_maxrss (os.wait4 on its pid; KiB on Linux), so
each run is measured alone even when both run. Events come from the JSON
report's `events` key when it has one. README.md gives the sources of the
plan choices. Python 3 standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30


def case_a(vpp):
    return {
        "name": "a",
        "title": "GPT-3 175B on 1,024 A100",
        "target_wall_s": 5.0,
        "target_rss_gib": 8.0,
        "args": ["--model", "gpt3-175b", "--cluster", "dgx-a100-80gb", "--nodes", "128",
                 "--tp", "8", "--pp", "8", "--dp", "16", "--schedule", "interleaved",
                 "--vpp", str(vpp), "--micro-batch", "1", "--global-batch", "1536",
                 "--seq-len", "2048", "--recompute", "full"],
    }


def case_b():
    # 126 layers do not split evenly over 16 stages: as in the Llama 3 paper
    # (arXiv:2407.21783, §3.3.2) the first and the last stage hold one layer
    # fewer: 7 + 14 × 8 + 7.
    stage_layers = ",".join(["7"] + ["8"] * 14 + ["7"])
    return {
        "name": "b",
        "title": "Llama-3-405B on 16,384 H100",
        "target_wall_s": 60.0,
        "target_rss_gib": 8.0,
        "args": ["--model", "llama3-405b", "--cluster", "dgx-h100", "--nodes", "2048",
                 "--tp", "8", "--pp", "16", "--dp", "128", "--schedule", "1f1b",
                 "--stage-layers", stage_layers, "--micro-batch", "1", "--global-batch", "2048",
                 "--seq-len", "8192", "--sequence-parallel"],
    }


def run_case(binary, case, timeout):
    """Runs one simulation; returns wall time, CPU time, peak RSS, events, report."""
    cmd = [binary, "simulate"] + case["args"] + ["--format", "json"]
    res = {"case": case["name"], "title": case["title"], "command": " ".join(cmd),
           "target_wall_s": case["target_wall_s"], "target_rss_gib": case["target_rss_gib"]}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.monotonic() - start > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.02)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    res.update(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
               peak_rss_gib=usage.ru_maxrss * 1024 / GIB, exit=proc.returncode,
               timed_out=timed_out)
    report = None
    if proc.returncode == 0:
        try:
            report = json.loads(stdout)
        except ValueError:
            res["error"] = "output is not JSON"
    else:
        lines = (stderr or stdout).strip().splitlines()
        res["error"] = ("timed out after %d s" % timeout if timed_out
                        else "exit %d: %s" % (proc.returncode,
                                             " | ".join(lines[-3:]) or "(no output)"))
    if report is not None:
        res["events"] = report.get("events")
        res["report"] = {k: report.get(k) for k in (
            "iteration_time_s", "tokens_per_s", "model_tflops_per_gpu", "mfu",
            "peak_memory_gib", "fits_memory", "schedule", "vpp", "micro_batches",
            "lanes", "tasks", "flows", "events") if k in report}
    res["ok"] = report is not None
    res["meets_targets"] = (res["ok"] and wall < case["target_wall_s"]
                            and res["peak_rss_gib"] < case["target_rss_gib"])
    res["meets_targets_on_cpu_time"] = (res["ok"] and res["cpu_s"] < case["target_wall_s"]
                                        and res["peak_rss_gib"] < case["target_rss_gib"])
    return res


def print_result(r, out):
    verdict = lambda ok: "ok" if ok else "MISSED"
    out.write("(%s) %s\n" % (r["case"], r["title"]))
    out.write("    %s\n" % r["command"])
    if not r["ok"]:
        out.write("    FAILED: %s\n" % r.get("error", "?"))
    out.write("    wall time     %8.2f s    target < %g s: %s\n" % (
        r["wall_s"], r["target_wall_s"], verdict(r["ok"] and r["wall_s"] < r["target_wall_s"])))
    out.write("    CPU time      %8.2f s    target < %g s: %s (user + sys, without waiting "
              "for a core)\n" % (r["cpu_s"], r["target_wall_s"],
                                 verdict(r["ok"] and r["cpu_s"] < r["target_wall_s"])))
    events = r.get("events")
    out.write("    events        %11s\n" % ("{:,}".format(events) if isinstance(events, int)
                                           else "n/a (no 'events' key)" if r["ok"] else "n/a"))
    if r["ok"] and isinstance(events, int) and r["wall_s"] > 0:
        out.write("    events/s      %11s\n" % "{:,.0f}".format(events / r["wall_s"]))
    out.write("    peak RSS      %8.2f GiB  target < %g GiB: %s\n" % (
        r["peak_rss_gib"], r["target_rss_gib"],
        verdict(r["ok"] and r["peak_rss_gib"] < r["target_rss_gib"])))
    rep = r.get("report") or {}
    if rep:
        parts = []
        if "iteration_time_s" in rep:
            parts.append("iteration %.2f s" % rep["iteration_time_s"])
        if isinstance(rep.get("mfu"), (int, float)):
            parts.append("MFU %.1f%%" % (100 * rep["mfu"]))
        if isinstance(rep.get("peak_memory_gib"), (int, float)):
            parts.append("peak device memory %.1f GiB%s" % (
                rep["peak_memory_gib"], "" if rep.get("fits_memory", True) else " (does not fit)"))
        for k in ("lanes", "tasks", "flows"):
            if isinstance(rep.get(k), int):
                parts.append("%s %s" % ("{:,}".format(rep[k]), k))
        out.write("    simulated     %s\n" % ", ".join(parts))
    out.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get("ORRERY_BINARY")
                    or str(REPO_ROOT / "build" / "cli" / "orrery"),
                    help="orrery binary ($ORRERY_BINARY, else build/cli/orrery)")
    ap.add_argument("--only", choices=["a", "b"], help="run one case")
    ap.add_argument("--vpp", type=int, default=2,
                    help="model chunks per pipeline rank in case a (default 2)")
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds before a run is killed (default 600)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    args = ap.parse_args()
    if not (os.path.isfile(args.binary) and os.access(args.binary, os.X_OK)):
        sys.exit("orrery binary not found: %s (build it, or set $ORRERY_BINARY / --binary)"
                 % args.binary)

    cases = [case_a(args.vpp), case_b()]
    if args.only:
        cases = [c for c in cases if c["name"] == args.only]
    out = sys.stdout
    out.write("orrery simulate at full scale (%s; %d CPUs online, load %.1f)\n\n" % (
        args.binary, os.cpu_count() or 0, os.getloadavg()[0]))
    results = []
    for case in cases:
        r = run_case(args.binary, case, args.timeout)
        results.append(r)
        print_result(r, out)
        out.flush()
    ok = all(r["meets_targets"] for r in results)
    ok_cpu = all(r["meets_targets_on_cpu_time"] for r in results)
    out.write("%s (on CPU time: %s)\n" % ("all targets met" if ok else "targets NOT all met",
                                          "all met" if ok_cpu else "NOT all met"))
    if args.json:
        Path(args.json).write_text(json.dumps({"binary": args.binary, "results": results},
                                              indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

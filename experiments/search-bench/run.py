#!/usr/bin/env python3
"""How good and how fast each search algorithm is, on the same cases.

For each case (a model, a cluster, a batch, a sequence length and, for the
8-GPU cases, a memory budget) and each algorithm (galvatron, exhaustive,
random, anneal) this script runs

    orrery search ... --algorithm A --format json --top 3 --time-limit T

and reads the best plan's simulated iteration time and tokens/s
(plans[0]: the event simulator re-scores the top 3 and decides their
order), the algorithm's search time (search_time_s, the re-scoring not
included) and how many candidates it evaluated. It prints a markdown table
with, per case, each algorithm's gap to the best tokens/s any algorithm
found, and writes the rows as CSV. A run that fails (no plan fits, a
timeout, an error) prints its error and is marked FAIL. README.md gives the
sources of the cases. Python 3 standard library only.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
ALGORITHMS = ["galvatron", "exhaustive", "random", "anneal"]
DEFAULT_TIME_LIMIT = 120

# GPT-3 13B has no preset: gpt3-13b.json here is its HuggingFace-style config (Brown et al.
# 2020, "Language Models are Few-Shot Learners", Table 2.1: 40 layers, 40 heads of 128, so
# d_model 5120 — the table's 5140 is not divisible by 40 heads —, context 2048).
GPT3_13B = str(HERE / "gpt3-13b.json")

# (name, what it is, orrery search arguments, time limit in s or None for --time-limit).
# Galvatron (Miao et al., VLDB 2023) evaluated BERT-Large and T5-Large on 8 GPUs with 8, 12
# and 16 GiB per GPU. Sequence 512 and each model's own pre-training batch: BERT 256 x 512
# (Devlin et al. 2019, appendix A.2), T5 128 x 512 (Raffel et al. 2020, section 3.1.2).
CASES = []
for _model, _label, _batch in (("bert-large", "BERT-Large", 256), ("t5-large", "T5-Large", 128)):
    for _gib in (8, 12, 16):
        CASES.append((
            "%s-8gpu-%dg" % (_model.split("-")[0], _gib),
            "%s, 8 A100 (1 DGX A100 80GB), %d GiB per GPU, batch %d x 512"
            % (_label, _gib, _batch),
            "--model %s --cluster dgx-a100-80gb --nodes 1 --global-batch %d --seq-len 512 "
            "--memory-budget %d" % (_model, _batch, _gib), None))
CASES += [
    # GPT-3's 13B batch: 1024 sequences of 2048 = 2M tokens (Brown et al. 2020, Table 2.1).
    ("gpt3-13b-64", "GPT-3 13B, 64 A100 (8 DGX A100 80GB), batch 1024 x 2048",
     "--model %s --cluster dgx-a100-80gb --nodes 8 --global-batch 1024 --seq-len 2048"
     % GPT3_13B, None),
    # Sequence 8192 and 4M tokens per batch, Llama 3's pre-training sequence and initial batch
    # (Dubey et al. 2024, "The Llama 3 Herd of Models", section 3.4.1).
    ("llama3-70b-256", "Llama-3-70B, 256 H100 (32 DGX H100), batch 512 x 8192",
     "--model llama3-70b --cluster dgx-h100 --nodes 32 --global-batch 512 --seq-len 8192",
     None),
    # Our choice: sequence 4096 and 256 x 4096 = 1M tokens per batch (Mixtral's pre-training
    # batch is not published; its 32k context would make this case about attention alone).
    ("mixtral-8x7b-64", "Mixtral-8x7B, 64 H100 (8 DGX H100), batch 256 x 4096",
     "--model mixtral-8x7b --cluster dgx-h100 --nodes 8 --global-batch 256 --seq-len 4096",
     None),
    # Narayanan et al., SC21, Table 1: GPT-3 175B on 1,024 A100, batch 1536, sequence 2048.
    ("gpt3-175b-1024", "GPT-3 175B, 1,024 A100 (128 DGX A100 80GB), batch 1536 x 2048",
     "--model gpt3-175b --cluster dgx-a100-80gb --nodes 128 --global-batch 1536 "
     "--seq-len 2048", None),
]


def run_one(binary, case, algorithm, time_limit):
    name, what, args, case_limit = case
    limit = case_limit if case_limit is not None else time_limit
    cmd = ([binary, "search"] + args.split() +
           ["--algorithm", algorithm, "--format", "json", "--top", "3",
            "--time-limit", str(limit), "-q"])
    res = {"case": name, "algorithm": algorithm, "time_limit_s": limit,
           "command": " ".join(cmd)}
    # The limit stops the algorithm; the re-scoring by the event simulator and the start-up
    # come after it, so the process gets a generous margin before it is killed.
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * limit + 300)
    except subprocess.TimeoutExpired:
        res["error"] = "killed after %d s" % (3 * limit + 300)
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
    plans = report.get("plans") or []
    if not plans:
        res["error"] = "no plan fits (pruned: %s)" % json.dumps(report.get("pruned", {}))
        return res
    best = plans[0]
    res.update(tokens_per_s=best["tokens_per_s"], iteration_time_s=best["iteration_time_s"],
               peak_memory_gib=best.get("peak_memory_gib"), plan=best.get("summary", ""),
               search_time_s=report["search_time_s"], evaluated=report.get("evaluated"),
               stopped_by_time_limit=report.get("stopped_by_time_limit", False))
    return res


def run_case(binary, case, algorithms, time_limit):
    rows = []
    for a in algorithms:
        r = run_one(binary, case, a, time_limit)
        if "error" in r:
            sys.stderr.write("FAIL %s / %s: %s\n" % (case[0], a, r["error"]))
        rows.append(r)
    ok = [r["tokens_per_s"] for r in rows if "error" not in r]
    best = max(ok) if ok else None
    for r in rows:
        if "error" not in r:
            r["gap_pct"] = 100.0 * (best - r["tokens_per_s"]) / best
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get("ORRERY_BINARY")
                    or str(REPO_ROOT / "build" / "cli" / "orrery"),
                    help="orrery binary ($ORRERY_BINARY, else build/cli/orrery)")
    ap.add_argument("--only", action="append", metavar="CASE",
                    help="run only this case (repeatable); names as in the table")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS),
                    help="comma-separated algorithms (default: %s)" % ",".join(ALGORITHMS))
    ap.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT,
                    help="--time-limit of each search, in s, for cases that set none "
                    "(default %d)" % DEFAULT_TIME_LIMIT)
    ap.add_argument("--jobs", type=int, default=1,
                    help="cases run at once (default 1; each search uses every core, so "
                    "more than 1 skews the search times)")
    ap.add_argument("--csv", default="search-bench.csv", metavar="FILE",
                    help="write the rows as CSV to FILE (default search-bench.csv)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args()
    if args.list:
        for name, what, _, _ in CASES:
            print("%-16s %s" % (name, what))
        return 0
    if not (os.path.isfile(args.binary) and os.access(args.binary, os.X_OK)):
        sys.exit("orrery binary not found: %s (build it, or set $ORRERY_BINARY / --binary)"
                 % args.binary)
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = set(algorithms) - set(ALGORITHMS)
    if unknown or not algorithms:
        sys.exit("unknown algorithm(s): %s (known: %s)"
                 % (", ".join(sorted(unknown)) or "none given", ", ".join(ALGORITHMS)))
    cases = CASES
    if args.only:
        unknown = set(args.only) - {c[0] for c in CASES}
        if unknown:
            sys.exit("unknown case(s): %s (--list names them)" % ", ".join(sorted(unknown)))
        cases = [c for c in CASES if c[0] in args.only]
    time_limit = int(args.time_limit) if args.time_limit == int(args.time_limit) \
        else args.time_limit

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        per_case = list(pool.map(
            lambda c: run_case(args.binary, c, algorithms, time_limit), cases))
    rows = [r for case_rows in per_case for r in case_rows]

    out = sys.stdout
    out.write("Search algorithms compared (%s, --top 3)\n\n" % args.binary)
    out.write("| case | algorithm | best simulated tokens/s | gap to best | search time s "
              "| evaluated |\n|---|---|---:|---:|---:|---:|\n")
    for r in rows:
        if "error" in r:
            out.write("| %s | %s | FAIL | | | |\n" % (r["case"], r["algorithm"]))
            continue
        out.write("| %s | %s | %.0f | %.2f%% | %.2f%s | %s |\n" % (
            r["case"], r["algorithm"], r["tokens_per_s"], r["gap_pct"], r["search_time_s"],
            " (limit)" if r["stopped_by_time_limit"] else "", r["evaluated"]))
    failed = [r for r in rows if "error" in r]
    if failed:
        out.write("\nFailed runs:\n")
        for r in failed:
            out.write("  %s / %s: %s\n" % (r["case"], r["algorithm"], r["error"]))
    out.write("\nBest plans:\n")
    for r in rows:
        if "error" not in r:
            out.write("  %-16s %-10s %s\n" % (r["case"], r["algorithm"], r["plan"]))

    fields = ["case", "algorithm", "tokens_per_s", "iteration_time_s", "gap_pct",
              "search_time_s", "stopped_by_time_limit", "evaluated", "peak_memory_gib",
              "time_limit_s", "plan", "error", "command"]
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    out.write("\nwrote %s\n" % args.csv)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

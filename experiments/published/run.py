#!/usr/bin/env python3
"""Predicted vs published TFLOP/s per GPU for Megatron-LM's measured runs.

For every row of published/megatron_measured.json (the fixtures directory:
$ORRERY_FIXTURES_DIR, else ../shared/fixtures next to the repository) this
builds the model and the plan, runs `orrery simulate ... --format json`, turns
the simulated iteration time into TFLOP/s per GPU with the FLOP count of the
row's own convention, and prints it next to the published figure.

FLOP conventions (the row's `tflops_kind` says which one it reports):

  SC21 rows (Narayanan et al., "Efficient Large-Scale Language Model Training
  on GPU Clusters Using Megatron-LM", SC21, arXiv:2104.04473, Eq. 3): FLOPs per
  iteration with full activation recomputation (the forward counted twice),
      F = 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)).

  Megatron-Core rows (Megatron-LM megatron/training/training.py,
  num_floating_point_operations, as of r0.8.0): model FLOPs, no recomputation,
      F = 12·B·s·l·h²·((1 + g/a + s/h)·(q/h) + (f/h)·k·m + V/(2·l·h))
  with g key/value groups, a heads, q = a·head_dim the query projection, f the
  FFN size, k the experts routed to (1 when dense) and m = 3/2 for SwiGLU, else
  1. For MHA with f = 4h this is 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)).

  Both divide by the iteration time and the GPU count: TFLOP/s/GPU =
  F / (T · N · 1e12). Orrery's own model_tflops_per_gpu / mfu are kept in the
  JSON output but not compared, since each convention counts differently.

Where a row leaves a setting out (micro-batch, interleaving, recomputation,
sequence parallelism) the script fills it in and says so per row; README.md
gives the sources. Python 3 standard library only.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path("published") / "megatron_measured.json"

# Megatron-LM examples/sc21/run_table_1.sh (the script that produced SC21
# Table 1): micro-batch size (MBS) and --num-layers-per-virtual-pipeline-stage
# per model, keyed by (layers, hidden). None: the script passes no
# virtual-stage flag, so the schedule is plain 1F1B. Every row runs with
# "--recompute-method uniform" (full recomputation of every layer).
SC21_TABLE1_SCRIPT = {
    (24, 2304): (16, None),   # 1.7B
    (30, 3072): (16, None),   # 3.6B
    (36, 4096): (16, None),   # 7.5B
    (40, 6144): (8, None),    # 18B
    (48, 8192): (4, None),    # 39B
    (60, 10240): (2, 5),      # 76B
    (80, 12288): (2, 5),      # 145B
    (96, 16384): (1, 3),      # 310B
    (105, 20480): (1, 1),     # 530B
    (128, 25600): (1, None),  # 1T
}
SC21_SCRIPT_NAME = "Megatron-LM examples/sc21/run_table_1.sh"

CLUSTER_FOR_GPU = [("A100", "dgx-a100-80gb"), ("H100", "dgx-h100")]


def sc21_eq3_flops(batch, seq, layers, hidden, vocab):
    """SC21 Eq. 3: 96·B·s·l·h²·(1 + s/6h + V/16lh) (counts the recompute forward)."""
    return 96.0 * batch * seq * layers * hidden ** 2 * (
        1.0 + seq / (6.0 * hidden) + vocab / (16.0 * layers * hidden))


def megatron_model_flops(batch, seq, layers, hidden, heads, kv_heads, ffn, vocab,
                         head_dim=None, experts_routed_to=1, swiglu=False):
    """Megatron-LM num_floating_point_operations (training.py, r0.8.0)."""
    head_dim = head_dim or hidden // heads
    q_ratio = head_dim * heads / hidden
    gated = 1.5 if swiglu else 1.0
    return 12.0 * batch * seq * layers * hidden ** 2 * (
        (1.0 + kv_heads / heads + seq / hidden) * q_ratio
        + (ffn / hidden) * experts_routed_to * gated
        + vocab / (2.0 * layers * hidden))


def flop_convention(row):
    """'sc21_eq3' or 'megatron_model', from the row's tflops_kind."""
    kind = (row.get("tflops_kind") or "").lower()
    if "eq.3" in kind or "eq3" in kind or "recompute forward" in kind:
        return "sc21_eq3"
    if "num_floating_point_operations" in kind or kind.startswith("model"):
        return "megatron_model"
    raise ValueError("unknown tflops_kind %r" % row.get("tflops_kind"))


def row_flops(row, convention):
    ffn = row.get("ffn_hidden") or 4 * row["hidden"]
    if convention == "sc21_eq3":
        return sc21_eq3_flops(row["global_batch_size"], row["seq_len"], row["layers"],
                              row["hidden"], row["vocab"])
    return megatron_model_flops(row["global_batch_size"], row["seq_len"], row["layers"],
                                row["hidden"], row["heads"], row.get("kv_heads") or row["heads"],
                                ffn, row["vocab"])


def is_sc21(row):
    return row["id"].startswith("sc21") or "2104.04473" in (row.get("source") or "")


def largest_vpp(layers_per_stage, limit=4):
    """The largest v in 2..limit dividing the stage's layers, else None (1F1B)."""
    for v in range(limit, 1, -1):
        if layers_per_stage % v == 0:
            return v
    return None


class RowPlan:
    """What is run for one row: the flags, and what was assumed (short and long)."""

    def __init__(self):
        self.flags = []
        self.short = []
        self.notes = []
        self.schedule = "1f1b"
        self.vpp = None
        self.micro_batch = 1


def plan_for_row(row, schedule_override=None):
    p = RowPlan()
    tp, pp, dp = row["tp"], row["pp"], row["dp"]
    cp = row.get("cp") or 1
    layers = row["layers"]
    if tp * pp * dp * cp != row["num_gpus"]:
        raise ValueError("tp·pp·dp·cp = %d != num_gpus %d" % (tp * pp * dp * cp, row["num_gpus"]))
    if layers % pp != 0:
        raise ValueError("layers %d not divisible by pp %d" % (layers, pp))
    per_stage = layers // pp

    if is_sc21(row):
        script = SC21_TABLE1_SCRIPT.get((layers, row["hidden"]))
        # Micro-batch and interleaving.
        if row.get("micro_batch_size"):
            p.micro_batch = row["micro_batch_size"]
        elif script:
            p.micro_batch = script[0]
            p.short.append("mb%d" % p.micro_batch)
            p.notes.append("micro-batch %d from %s" % (p.micro_batch, SC21_SCRIPT_NAME))
        else:
            p.short.append("mb1?")
            p.notes.append("micro-batch not given: assumed 1")
        if pp > 1:
            if row.get("vp"):
                p.vpp = row["vp"]
            elif script and script[1]:
                p.vpp = per_stage // script[1]
                p.short.append("v%d" % p.vpp)
                p.notes.append("interleaved, %d layer(s) per virtual stage -> vpp %d (%s)"
                               % (script[1], p.vpp, SC21_SCRIPT_NAME))
            elif script:
                p.short.append("1f1b")
                p.notes.append("no virtual stages in %s: plain 1F1B" % SC21_SCRIPT_NAME)
            else:
                p.vpp = largest_vpp(per_stage)
                p.short.append("v%s?" % (p.vpp or 1))
                p.notes.append("interleaved, vp not given: assumed the largest vpp <= 4 "
                               "dividing layers/pp = %d: %s" % (per_stage, p.vpp or "none (1F1B)"))
            if p.vpp and p.vpp > 1:
                p.schedule = "interleaved"
        p.flags += ["--recompute", "full", "--precision", "fp16", "--zero",
                    str(row.get("zero_stage") or 0), "--attention", "unfused"]
        p.notes.append("full recomputation (the row; run_table_1.sh passes "
                       "--recompute-method uniform); fp16; ZeRO 0; no sequence parallelism")
        p.notes.append("unfused attention: the 2021 runs predate FlashAttention (2022); "
                       "Megatron-LM's fused scale-mask-softmax reads and writes the s x s "
                       "scores")
        if row.get("sequence_parallel"):
            p.flags.append("--sequence-parallel")
    else:
        # Megatron-Core r0.8.0 README table: the README names the overlap flags
        # it used and nothing else; the rest is assumed.
        p.micro_batch = row.get("micro_batch_size") or 1
        if not row.get("micro_batch_size"):
            p.short.append("mb1?")
            p.notes.append("micro-batch not given: assumed 1")
        if pp > 1:
            if row.get("vp"):
                p.vpp = row["vp"]
                p.schedule = "interleaved"
            else:
                p.short.append("1f1b?")
                p.notes.append("vp not given and the README names no interleaving: "
                               "assumed plain 1F1B")
        sp = row.get("sequence_parallel")
        if sp is None:
            sp = tp > 1
            if sp:
                p.short.append("SP")
                p.notes.append("sequence parallel: --tp-comm-overlap (named in the README) "
                               "requires it (Megatron-LM arguments.py asserts it)")
        if sp:
            p.flags.append("--sequence-parallel")
        if tp > 1:
            p.flags.append("--tp-comm-overlap")
            p.notes.append("tensor-parallel communication overlapped with the GEMMs: the "
                           "README names --tp-comm-overlap")
        zero = row.get("zero_stage")
        if zero is None:
            zero = 1
            p.short.append("Z1")
            p.notes.append("ZeRO-1: --overlap-param-gather (named in the README) requires "
                           "--use-distributed-optimizer")
        p.flags += ["--zero", str(zero)]
        recompute = row.get("recompute")
        if not recompute:
            recompute = "selective"
            p.short.append("sel?")
            p.notes.append("recompute not given: assumed selective (the attention core is "
                           "not kept, as with the flash attention Megatron-Core runs by "
                           "default; the README names no recomputation flag)")
        p.flags += ["--recompute", recompute.split()[0], "--precision", "bf16"]
        if not row.get("ffn_hidden"):
            p.notes.append("ffn_hidden not given: 4h (the row's own assumption)")

    if schedule_override and pp > 1 and p.schedule != schedule_override:
        p.notes.append("schedule overridden: %s instead of %s%s" % (
            schedule_override, p.schedule, " (vpp %d)" % p.vpp if p.vpp else ""))
        p.short.append("ovr:%s" % schedule_override)
        p.schedule = schedule_override
        p.vpp = None
    p.flags = ["--tp", str(tp), "--pp", str(pp), "--dp", str(dp), "--cp", str(cp),
               "--micro-batch", str(p.micro_batch), "--global-batch",
               str(row["global_batch_size"]), "--seq-len", str(row["seq_len"])] + p.flags
    if pp > 1:
        p.flags += ["--schedule", p.schedule]
        if p.schedule == "interleaved":
            p.flags += ["--vpp", str(p.vpp)]
    return p


def plan_label(row, p):
    s = "t%d p%d d%d" % (row["tp"], row["pp"], row["dp"])
    if p.schedule == "interleaved":
        s += " v%d" % p.vpp
    return s + " mb%d" % p.micro_batch


class Orrery:
    def __init__(self, binary, timeout):
        self.binary = str(binary)
        self.timeout = timeout
        self._presets = None

    def presets(self):
        """Preset name -> its JSON (orrery models --model NAME --format json)."""
        if self._presets is not None:
            return self._presets
        self._presets = {}
        try:
            out = subprocess.run([self.binary, "models", "--format", "json"],
                                 capture_output=True, text=True, timeout=60)
            listing = json.loads(out.stdout) if out.returncode == 0 else []
        except (OSError, ValueError, subprocess.TimeoutExpired):
            listing = []
        if isinstance(listing, dict):
            listing = listing.get("models") or listing.get("presets") or []
        for m in listing:
            if isinstance(m, dict) and m.get("name"):
                self._presets[m["name"]] = m
        return self._presets


def pick(d, *names):
    for n in names:
        if isinstance(d, dict) and d.get(n) is not None:
            return d[n]
    return None


def matching_preset(orrery, row, ffn):
    """A preset whose shape is exactly the row's, else None."""
    for name, m in sorted(orrery.presets().items()):
        shape = (pick(m, "num_layers", "layers"), pick(m, "hidden_size", "hidden"),
                 pick(m, "num_attention_heads", "heads"), pick(m, "ffn_hidden_size", "ffn_hidden"),
                 pick(m, "vocab_size", "vocab"),
                 pick(m, "default_sequence_length", "seq_len", "sequence_length"))
        family = str(pick(m, "family") or "")
        kv = pick(m, "num_kv_heads", "kv_heads")
        if family.lower().startswith("gpt") and kv in (None, row["heads"]) and shape == (
                row["layers"], row["hidden"], row["heads"], ffn, row["vocab"], row["seq_len"]):
            return name
    return None


def gpt2_config(row, ffn):
    """A HuggingFace GPT-2 config.json (what workload/hf_import.h reads for gpt2):
    Megatron's GPT block is GPT-2's (LayerNorm, biases, GELU, learned positions,
    tied embeddings by default)."""
    return {
        "model_type": "gpt2",
        "_name_or_path": row["id"],
        "n_layer": row["layers"],
        "n_embd": row["hidden"],
        "n_head": row["heads"],
        "n_inner": ffn,
        "n_positions": row["seq_len"],
        "vocab_size": row["vocab"],
        "activation_function": "gelu",
        "tie_word_embeddings": True,
    }


def generation(row):
    """'A100' or 'H100': the calibration group of a row."""
    gpu = (row.get("hardware") or {}).get("gpu_type", "")
    return "H100" if "H100" in gpu else "A100"


def run_row(orrery, row, tmpdir, schedule_override, scale=1.0):
    result = {"id": row["id"], "gpus": row["num_gpus"], "published_tflops": row["tflops_per_gpu"],
              "ok": False}
    try:
        convention = flop_convention(row)
        result["flop_convention"] = convention
        plan = plan_for_row(row, schedule_override)
        result.update(plan=plan_label(row, plan), assumptions_short=" ".join(plan.short) or "-",
                      assumptions=plan.notes, schedule=plan.schedule, vpp=plan.vpp,
                      micro_batch=plan.micro_batch)
        ffn = row.get("ffn_hidden") or 4 * row["hidden"]
        model = matching_preset(orrery, row, ffn)
        if model is None:
            path = Path(tmpdir) / row["id"] / "config.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(gpt2_config(row, ffn), indent=1))
            model = str(path)
            result["model"] = "config.json (gpt2)"
        else:
            result["model"] = model
        gpu = (row.get("hardware") or {}).get("gpu_type", "")
        cluster = next((c for key, c in CLUSTER_FOR_GPU if key in gpu), None)
        if cluster is None:
            raise ValueError("no cluster preset for gpu_type %r" % gpu)
        per_node = (row.get("hardware") or {}).get("gpus_per_node") or 8
        if row["num_gpus"] % per_node:
            raise ValueError("num_gpus %d is not whole nodes of %d" % (row["num_gpus"], per_node))
        nodes = row["num_gpus"] // per_node
        cmd = [orrery.binary, "simulate", "--model", model, "--cluster", cluster,
               "--nodes", str(nodes)] + plan.flags + ["--format", "json"]
        if scale != 1.0:
            cmd += ["--compute-efficiency-scale", "%g" % scale]
        result["scale"] = scale
        result["command"] = " ".join(cmd)
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=orrery.timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError("timed out after %d s" % orrery.timeout)
        result["wall_s"] = time.monotonic() - start
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError("exit %d: %s" % (proc.returncode,
                                                " | ".join(msg[-3:]) or "(no output)"))
        try:
            sim = json.loads(proc.stdout)
        except ValueError as e:
            raise RuntimeError("output is not JSON (%s)" % e)
        t = sim.get("iteration_time_s")
        if not isinstance(t, (int, float)) or t <= 0:
            raise RuntimeError("no positive iteration_time_s in the output")
        flops = row_flops(row, convention)
        predicted = flops / (t * row["num_gpus"] * 1e12)
        result.update(
            ok=True, iteration_time_s=t, predicted_tflops=predicted,
            error_pct=100.0 * (predicted - row["tflops_per_gpu"]) / row["tflops_per_gpu"],
            published_iteration_time_s=pick(row.get("derived") or {},
                                            "iteration_time_s_from_eq3", "iteration_time_s_est"),
            orrery={k: sim.get(k) for k in (
                "tokens_per_s", "samples_per_s", "model_tflops_per_gpu",
                "hardware_tflops_per_gpu", "mfu", "peak_memory_gib", "memory_capacity_gib",
                "fits_memory", "breakdown", "schedule", "vpp", "micro_batches", "events")
                if k in sim})
    except (ValueError, RuntimeError, KeyError, OSError) as e:
        result["error"] = str(e)
    return result


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def print_table(results, out):
    cols = [("id", 22), ("GPUs", 5), ("plan", 22), ("assumed", 22), ("pub", 6), ("pred", 6),
            ("err%", 7), ("iter s", 7), ("mem GiB", 8)]
    out.write("  ".join(name.ljust(w) if i < 4 else name.rjust(w)
                        for i, (name, w) in enumerate(cols)).rstrip() + "\n")
    for r in results:
        o = r.get("orrery") or {}
        mem = fmt(o.get("peak_memory_gib"), ".1f")
        if o.get("fits_memory") is False:
            mem += "!"
        cells = [r["id"], str(r["gpus"]), r.get("plan", "-"), r.get("assumptions_short", "-"),
                 fmt(r["published_tflops"], ".1f"),
                 fmt(r.get("predicted_tflops"), ".1f") if r["ok"] else "FAIL",
                 fmt(r.get("error_pct"), "+.1f"), fmt(r.get("iteration_time_s"), ".2f"), mem]
        out.write("  ".join(c.ljust(w) if i < 4 else c.rjust(w)
                            for i, (c, (_, w)) in enumerate(zip(cells, cols))).rstrip() + "\n")


def summarize(results):
    errs = [abs(r["error_pct"]) for r in results if r["ok"]]
    worst = max((r for r in results if r["ok"]), key=lambda r: abs(r["error_pct"]), default=None)
    return {"rows": len(results), "simulated": len(errs),
            "failed": sum(1 for r in results if not r["ok"]),
            "mean_abs_error_pct": sum(errs) / len(errs) if errs else None,
            "max_abs_error_pct": max(errs) if errs else None,
            "max_abs_error_id": worst["id"] if worst else None}


def default_fixture():
    base = os.environ.get("ORRERY_FIXTURES_DIR")
    return (Path(base) if base else REPO_ROOT.parent / "shared" / "fixtures") / FIXTURE


CALIBRATION_GRID = (0.6, 0.7, 0.8, 0.9, 1.0)


def interpolate(points, x):
    """Piecewise-linear through sorted (x, y) points, clamped at the ends."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def calibrate(results_by_scale, rows, out):
    """Leave-one-out fit of one compute-efficiency scale per GPU generation.

    For each row i of a generation, the scale that minimises the mean
    |error| over the generation's OTHER rows is found on a 0.0025 grid
    (each row's prediction interpolated between the simulated scales), and
    row i is predicted with it: the error of a model calibrated without the
    row it is judged on. Also prints the scale fitted on all rows of each
    generation (what a calibration would set)."""
    curves = {}
    for r in rows:
        pts = []
        for scale in CALIBRATION_GRID:
            res = results_by_scale[scale][r["id"]]
            if res["ok"]:
                pts.append((scale, res["predicted_tflops"]))
        curves[r["id"]] = pts
    fine = [0.6 + 0.0025 * k for k in range(161)]

    def mae(ids, scale):
        errs = [abs(interpolate(curves[i], scale) - pub[i]) / pub[i] for i in ids]
        return 100.0 * sum(errs) / len(errs)

    pub = {r["id"]: r["tflops_per_gpu"] for r in rows}
    groups = {}
    for r in rows:
        if len(curves[r["id"]]) == len(CALIBRATION_GRID):
            groups.setdefault(generation(r), []).append(r["id"])
    out.write("\nCalibration: one compute-efficiency scale per GPU generation "
              "(--compute-efficiency-scale), leave-one-out\n\n")
    out.write("%-22s %-5s %8s %8s %8s %8s %8s\n" % ("id", "gen", "pub", "nominal", "err%",
                                                   "LOO s", "LOO err%"))
    loo_errors = []
    summary = {}
    for gen, ids in sorted(groups.items()):
        full = min(fine, key=lambda x: (mae(ids, x), x))
        summary[gen] = {"scale_all_rows": round(full, 4), "mae_all_rows_pct": mae(ids, full)}
        for i in ids:
            others = [j for j in ids if j != i] or ids
            s_i = min(fine, key=lambda x: (mae(others, x), x))
            pred = interpolate(curves[i], s_i)
            err = 100.0 * (pred - pub[i]) / pub[i]
            nominal = interpolate(curves[i], 1.0)
            loo_errors.append(abs(err))
            summary[gen].setdefault("rows", {})[i] = {"loo_scale": round(s_i, 4),
                                                     "loo_error_pct": err}
            out.write("%-22s %-5s %8.1f %8.1f %+8.1f %8.4f %+8.1f\n" % (
                i, gen, pub[i], nominal, 100.0 * (nominal - pub[i]) / pub[i], s_i, err))
    out.write("\n")
    for gen, v in sorted(summary.items()):
        out.write("%s: scale fitted on all %d rows %.4f (mean |error| %.1f%% on them)\n" % (
            gen, len(groups[gen]), v["scale_all_rows"], v["mae_all_rows_pct"]))
    if loo_errors:
        out.write("leave-one-out: mean |error| %.1f%%, max |error| %.1f%% over %d rows\n" % (
            sum(loo_errors) / len(loo_errors), max(loo_errors), len(loo_errors)))
    summary["loo_mean_abs_error_pct"] = (sum(loo_errors) / len(loo_errors)
                                         if loo_errors else None)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get("ORRERY_BINARY")
                    or str(REPO_ROOT / "build" / "cli" / "orrery"),
                    help="orrery binary ($ORRERY_BINARY, else build/cli/orrery)")
    ap.add_argument("--fixture", default=None,
                    help="megatron_measured.json ($ORRERY_FIXTURES_DIR/%s, else "
                         "../shared/fixtures/%s)" % (FIXTURE, FIXTURE))
    ap.add_argument("--only", action="append", metavar="ID",
                    help="run only this row (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="rows simulated in parallel (default 1)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    ap.add_argument("--timeout", type=int, default=1800,
                    help="seconds allowed per simulation (default 1800)")
    ap.add_argument("--schedule-override", choices=["1f1b", "gpipe"],
                    help="run every pipelined row with this schedule instead of the one "
                         "the row used (a baseline while interleaving is not simulated)")
    ap.add_argument("--calibrate", action="store_true",
                    help="also simulate every row at compute-efficiency scales %s and fit one "
                         "scale per GPU generation, leave-one-out (5x the simulations)"
                         % ", ".join("%g" % g for g in CALIBRATION_GRID))
    ap.add_argument("--keep-configs", metavar="DIR",
                    help="write the generated config.json files under DIR and keep them")
    args = ap.parse_args()

    fixture = Path(args.fixture) if args.fixture else default_fixture()
    rows = json.loads(fixture.read_text())
    if args.only:
        known = {r["id"] for r in rows}
        missing = [i for i in args.only if i not in known]
        if missing:
            sys.exit("unknown row id(s): %s (known: %s)" % (", ".join(missing),
                                                             ", ".join(sorted(known))))
        rows = [r for r in rows if r["id"] in args.only]
    if not (os.path.isfile(args.binary) and os.access(args.binary, os.X_OK)):
        sys.exit("orrery binary not found: %s (build it, or set $ORRERY_BINARY / --binary)"
                 % args.binary)
    orrery = Orrery(args.binary, args.timeout)
    orrery.presets()

    tmpdir = args.keep_configs or tempfile.mkdtemp(prefix="orrery-published-")
    Path(tmpdir).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        scales = CALIBRATION_GRID if args.calibrate else (1.0,)
        jobs = [(row, scale) for scale in scales for row in rows]
        by_scale = {scale: {} for scale in scales}
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(run_row, orrery, row, tmpdir, args.schedule_override,
                                   scale): (row["id"], scale) for row, scale in jobs}
            done = 0
            for f in concurrent.futures.as_completed(futures):
                row_id, scale = futures[f]
                r = f.result()
                by_scale[scale][row_id] = r
                done += 1
                status = ("%.1f TFLOP/s (%+.1f%%)" % (r["predicted_tflops"], r["error_pct"])
                          if r["ok"] else "FAILED")
                sys.stderr.write("[%d/%d] %s at scale %g: %s, %.1f s\n" % (
                    done, len(jobs), r["id"], scale, status, r.get("wall_s", 0.0)))
        results = [by_scale[1.0][row["id"]] for row in rows]
    finally:
        if not args.keep_configs:
            shutil.rmtree(tmpdir, ignore_errors=True)

    out = sys.stdout
    out.write("Megatron-LM published runs vs orrery simulate (%s)\n" % fixture)
    out.write("pub/pred: TFLOP/s per GPU in the row's convention (SC21 rows: Eq. 3, with the "
              "recompute forward; mcore rows: Megatron model FLOPs); err% = (pred - pub)/pub; "
              "mem: simulated peak, '!' = does not fit\n\n")
    print_table(results, out)
    s = summarize(results)
    out.write("\n%d rows, %d simulated, %d failed" % (s["rows"], s["simulated"], s["failed"]))
    if s["simulated"]:
        out.write("; mean |error| %.1f%%, max |error| %.1f%% (%s)" % (
            s["mean_abs_error_pct"], s["max_abs_error_pct"], s["max_abs_error_id"]))
    out.write("; %.0f s\n" % (time.monotonic() - started))
    calibration = calibrate(by_scale, rows, out) if args.calibrate else None

    out.write("\nAssumed (each note, then the rows it applies to):\n")
    notes = {}
    for r in results:
        for note in r.get("assumptions") or []:
            notes.setdefault(note, []).append(r["id"])
    for note, ids in notes.items():
        out.write("  - %s\n      %s\n" % (note, ", ".join(ids)))
    failed = [r for r in results if not r["ok"]]
    if failed:
        out.write("\nFailures:\n")
        for r in failed:
            out.write("  %-22s %s\n" % (r["id"], r.get("error", "?")))
            if r.get("command"):
                out.write("  %-22s   %s\n" % ("", r["command"]))

    if args.json:
        Path(args.json).write_text(json.dumps(
            {"fixture": str(fixture), "binary": args.binary,
             "schedule_override": args.schedule_override, "summary": s,
             "calibration": calibration, "rows": results},
            indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

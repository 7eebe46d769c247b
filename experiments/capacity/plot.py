#!/usr/bin/env python3
"""Plots and a markdown table from the CSV that `orrery capacity` writes.

    python3 experiments/capacity/plot.py out/capacity.csv --out-dir out \
        --subject "Llama-3-70B, 15T tokens"

writes, next to each other in --out-dir:

  time_to_train.png / .svg  days to train against the number of devices
                            (log2 axis), one colour per device type, one line
                            style per NIC line rate (solid the slowest);
  pareto.png / .svg         cost (millions of USD) against days for every
                            configuration; the Pareto-optimal ones (no other
                            is both cheaper and faster) joined and labelled;
  table.md                  the CSV's key columns as a markdown table, the
                            Pareto-optimal rows marked.

and prints the Pareto front. A row whose `days` or `cost` is empty or not a
number (no plan fits that cluster) is left out of the plots, kept in the table
and reported on stderr. A CSV that lacks a column these need is an error that
names the file and the missing columns.

Needs matplotlib (Debian: `apt-get install python3-matplotlib`); the Agg
backend draws without a display. Only the plots need it: the test suite and
`orrery capacity` do not.
"""

import argparse
import csv
import math
import sys
from pathlib import Path

# Columns the plots and the table read. `orrery capacity` writes more.
REQUIRED_COLUMNS = [
    "name", "device", "devices", "devices_used", "nic_gbps", "price_per_device_hour",
    "plan", "iteration_s", "tokens_per_s", "days", "cost", "mfu", "bound",
    "peak_memory_gib", "days_nic_x2", "days_memory_x2", "days_devices_x2",
]

# Colours from matplotlib's default cycle (tab10), fixed per device so the two
# plots agree; a device not listed takes the next unused one.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
LINE_STYLES = ["-", "--", ":", "-."]
NIC_MARKERS = ["o", "^", "s", "D"]


class InputError(Exception):
    """A problem with the CSV, reported as one line naming the file."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Plot `orrery capacity` results: time to train vs devices, "
                    "and the cost-vs-time Pareto front.")
    parser.add_argument("csv", type=Path, help="capacity.csv written by `orrery capacity`")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where to write the plots and table.md (default: the CSV's folder)")
    parser.add_argument("--subject", default="",
                        help='what was planned, for the titles, e.g. "Llama-3-70B, 15T tokens"')
    return parser.parse_args(argv)


def number(text):
    """`text` as a float, or None when empty or not a finite number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_rows(path):
    """The CSV's rows as dicts. InputError when it is missing, empty or lacks a column."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            rows = list(reader)
    except OSError as e:
        raise InputError("%s: cannot read: %s" % (path, e.strerror or e))
    except csv.Error as e:
        raise InputError("%s: not a valid CSV: %s" % (path, e))
    if not header:
        raise InputError("%s: empty file (expected a header row with columns %s)"
                         % (path, ", ".join(REQUIRED_COLUMNS)))
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError("%s: missing column%s %s (the header has: %s)"
                         % (path, "s" if len(missing) > 1 else "", ", ".join(missing),
                            ", ".join(header)))
    if not rows:
        raise InputError("%s: no rows after the header" % path)
    for i, row in enumerate(rows, start=2):
        for column in ("devices", "nic_gbps"):
            if number(row[column]) is None:
                raise InputError("%s: line %d: column %s is %r, expected a number"
                                 % (path, i, column, row[column]))
    return rows


def device_label(row):
    """A short name for a row's device type: the sweep entry's name in capitals
    (h100 -> H100), else the device preset's name."""
    name = (row["name"] or "").strip()
    return name.upper() if name else row["device"]


def nic_label(gbps):
    return "%g Gb/s" % gbps


def pareto_front(points):
    """The points no other point beats on both days and cost (ties kept once),
    sorted by days. Each point is a dict with 'days' and 'cost'."""
    front = []
    for p in sorted(points, key=lambda q: (q["days"], q["cost"])):
        if not front or p["cost"] < front[-1]["cost"]:
            front.append(p)
    return front


def thousands(value, _pos=None):
    return "{:,.0f}".format(value)


def plot_time_to_train(plt, ticker, points, colours, nics, subject, out_dir):
    fig, ax = plt.subplots(figsize=(9, 6))
    for device, colour in colours.items():
        for k, nic in enumerate(nics):
            series = sorted((p for p in points if p["label"] == device and p["nic"] == nic),
                            key=lambda p: p["devices"])
            if not series:
                continue
            ax.plot([p["devices"] for p in series], [p["days"] for p in series],
                    color=colour, linestyle=LINE_STYLES[k % len(LINE_STYLES)],
                    marker=NIC_MARKERS[k % len(NIC_MARKERS)], markersize=5,
                    label="%s, %s NICs" % (device, nic_label(nic)))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted({p["devices"] for p in points})
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(thousands))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: "%g" % v))
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
        lambda v, _p: "%g" % v if str("%g" % v)[0] in "25" else ""))
    ax.set_xlabel("Devices (GPUs, log\u2082 scale)")
    ax.set_ylabel("Time to train (days, log scale)")
    ax.set_title("%sTime to train vs cluster size" % (subject + ": " if subject else ""))
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", axis="y", alpha=0.15)
    ax.legend(title="Device, NIC line rate", fontsize=9)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out_dir / ("time_to_train." + ext), dpi=150)
    plt.close(fig)


def plot_pareto(plt, ticker, points, front, colours, nics, prices, subject, out_dir):
    fig, ax = plt.subplots(figsize=(9, 6))
    for device, colour in colours.items():
        for k, nic in enumerate(nics):
            series = [p for p in points if p["label"] == device and p["nic"] == nic]
            if not series:
                continue
            ax.scatter([p["days"] for p in series], [p["cost"] / 1e6 for p in series],
                       color=colour, marker=NIC_MARKERS[k % len(NIC_MARKERS)], s=36,
                       alpha=0.85, label="%s, %s NICs" % (device, nic_label(nic)), zorder=3)
    ax.plot([p["days"] for p in front], [p["cost"] / 1e6 for p in front], color="black",
            linewidth=1.2, linestyle="-", zorder=2, label="Pareto front")
    ax.scatter([p["days"] for p in front], [p["cost"] / 1e6 for p in front], s=110,
               facecolors="none", edgecolors="black", linewidths=1.2, zorder=4)
    for i, p in enumerate(front):
        # Below-left of a Pareto point nothing lies (no point is both faster and
        # cheaper): the labels go there, the fastest one's below-right (the axis).
        dx, dy = (8, -14) if i == 0 else (-8, -14)
        ax.annotate("%s \u00d7%s, %s" % (p["label"], thousands(p["devices"]), nic_label(p["nic"])),
                    (p["days"], p["cost"] / 1e6), textcoords="offset points", xytext=(dx, dy),
                    ha="left" if dx > 0 else "right", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
    # Days span more than a decade: a log axis keeps the fast, large clusters apart.
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.FixedLocator(
        [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
         if min(p["days"] for p in points) / 1.5 <= t <= max(p["days"] for p in points) * 1.5]))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: "%g" % v))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("Time to train (days, log scale)")
    ax.set_ylabel("Cost (millions of USD)")
    # Cost from zero: the gaps between clusters read as the fractions they are.
    ax.set_ylim(0, max(p["cost"] for p in points) / 1e6 * 1.1)
    ax.text(0.99, 0.02, "Cost = devices \u00d7 days \u00d7 24 h \u00d7 price per device-hour: "
            + ", ".join("%s $%.2f" % (label, price) for label, price in prices.items()),
            transform=ax.transAxes, fontsize=8, color="#444444", va="bottom", ha="right")
    ax.set_title("%sCost vs time to train" % (subject + ": " if subject else ""))
    ax.grid(True, alpha=0.4)
    ax.legend(title="Device, NIC line rate", fontsize=9, loc="upper right")
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out_dir / ("pareto." + ext), dpi=150)
    plt.close(fig)


def fmt(value, pattern):
    v = number(value)
    return pattern % v if v is not None else "—"


def relative(base, other):
    """`other` against `base` as a signed percentage, or — when either is missing."""
    b, o = number(base), number(other)
    if b is None or o is None or b == 0:
        return "—"
    change = 100.0 * (o - b) / b
    return "0%" if abs(change) < 0.5 else "%+.0f%%" % change


def write_table(rows, front_keys, path):
    lines = [
        "| device | devices | NIC | plan | days | cost (M USD) | MFU | bound | "
        "NIC ×2 | memory ×2 | devices ×2 |",
        "|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    first_seen = {}
    for r in rows:
        first_seen.setdefault(device_label(r), len(first_seen))
    ordered = sorted(rows, key=lambda r: (first_seen[device_label(r)], number(r["devices"]),
                                          number(r["nic_gbps"])))
    for r in ordered:
        key = (device_label(r), number(r["devices"]), number(r["nic_gbps"]))
        devices = thousands(number(r["devices"]))
        used = number(r["devices_used"])
        if used is not None and used != number(r["devices"]):
            devices += " (%s used)" % thousands(used)
        cost = number(r["cost"])
        mfu = number(r["mfu"])
        lines.append("| %s | %s | %g | `%s` | %s | %s | %s | %s | %s | %s | %s |" % (
            device_label(r) + (" ★" if key in front_keys else ""),
            devices, number(r["nic_gbps"]),
            (r["plan"] or "no plan fits").replace("|", "\\|"),
            fmt(r["days"], "%.1f"),
            "%.1f" % (cost / 1e6) if cost is not None else "—",
            "%.0f%%" % (100 * mfu) if mfu is not None else "—",
            r["bound"] or "—",
            relative(r["days"], r["days_nic_x2"]),
            relative(r["days"], r["days_memory_x2"]),
            relative(r["days"], r["days_devices_x2"])))
    text = "\n".join(lines) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv):
    args = parse_args(argv)
    out_dir = args.out_dir or args.csv.parent
    try:
        rows = read_rows(args.csv)
    except InputError as e:
        print("plot.py: %s" % e, file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        print("plot.py: matplotlib is not installed for %s; on Debian: "
              "apt-get install python3-matplotlib (then run with /usr/bin/python3)"
              % sys.executable, file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)

    points = []
    for i, r in enumerate(rows, start=2):
        days, cost = number(r["days"]), number(r["cost"])
        if days is None or cost is None or days <= 0:
            print("plot.py: %s: line %d (%s, %s devices, %s Gb/s): no days or cost (%s), "
                  "left out of the plots" % (args.csv, i, r["name"], r["devices"], r["nic_gbps"],
                                             r["bound"] or r["plan"] or "empty"),
                  file=sys.stderr)
            continue
        points.append({"label": device_label(r), "devices": number(r["devices"]),
                       "nic": number(r["nic_gbps"]), "days": days, "cost": cost})
    if not points:
        print("plot.py: %s: no row has both days and cost; nothing to plot" % args.csv,
              file=sys.stderr)
        return 1

    colours = {}
    for p in points:
        if p["label"] not in colours:
            colours[p["label"]] = PALETTE[len(colours) % len(PALETTE)]
    nics = sorted({p["nic"] for p in points})
    front = pareto_front(points)

    plot_time_to_train(plt, ticker, points, colours, nics, args.subject, out_dir)
    prices = {}
    for r in rows:
        price = number(r["price_per_device_hour"])
        if price is not None:
            prices.setdefault(device_label(r), price)
    plot_pareto(plt, ticker, points, front, colours, nics, prices, args.subject, out_dir)
    write_table(rows, {(p["label"], p["devices"], p["nic"]) for p in front},
                out_dir / "table.md")

    print("Pareto front (fastest first):")
    for p in front:
        print("  %-5s %6s devices, %4g Gb/s: %7.2f days, %8.2f M USD"
              % (p["label"], thousands(p["devices"]), p["nic"], p["days"], p["cost"] / 1e6))
    print("wrote %s" % ", ".join(str(out_dir / n) for n in (
        "time_to_train.png", "time_to_train.svg", "pareto.png", "pareto.svg", "table.md")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

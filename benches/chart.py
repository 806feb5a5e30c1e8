#!/usr/bin/env python3
"""Chart and table of the throughput benches, from criterion's saved estimates.

Reads `target/criterion/<workload>/<implementation>/<threads>/new/{benchmark,estimates}.json`,
as left by `cargo bench --bench throughput`, and writes:

- `docs/throughput.svg`: throughput against threads, one panel per workload, one line per
  implementation;
- `docs/throughput.md`: ops/s for every workload x threads x implementation, the ratios
  ours/mutex and ours/dashmap-entry, and the issue's targets, met or missed.

Throughput is the bench's elements per iteration over criterion's *median* time per iteration
(its point estimate). Python 3 standard library only.

Usage, from the repository root:

    cargo bench --bench throughput && python3 benches/chart.py

Options: --criterion DIR (default target/criterion), --svg PATH, --table PATH (use - for stdout),
--note TEXT (a line for the table, e.g. the load average seen during the run).

`--ceilings` instead prints the table of `cargo bench --bench ceilings` (bare tables against
ours and the mutex on uniform-100k) to stdout, and writes nothing.

`--levels GROUP/THREADS` (e.g. `--levels uniform-100k/2`) instead prints, for every
implementation in that bench group at that thread count, its samples (criterion's `sample.json`)
split in two levels, fast and slow, with the median of each: the split that makes the two
groups' log-times tightest (two-means in one dimension), and where it fell. On a VM whose
cross-core round trip switches between two speeds (`cargo bench --bench round_trip`), this
shows at which level each implementation ran. Samples of one level split that way too, into two
close groups: read the slow / fast column. `--criterion` may be given several times to pool runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
from pathlib import Path
from statistics import median, pvariance

WORKLOADS = [
    "hot-key",
    "uniform-1k",
    "uniform-100k",
    "gate",
    "churn",
    "broker-gate",
    "crash-storm",
    "refused-gate",
]
IMPLEMENTATIONS = ["ours", "mutex", "dashmap-entry"]
THREADS = [1, 2, 4, 8]
COLORS = {"ours": "#d62728", "mutex": "#1f77b4", "dashmap-entry": "#2ca02c"}
DASHES = {"ours": "", "mutex": "6,3", "dashmap-entry": "2,3"}
# The group of `cargo bench --bench ceilings` ("ceiling-" and its workload's name), printed by
# --ceilings, and its stores in the bench's order.
CEILINGS_GROUP = "ceiling-uniform-100k"
CEILINGS = [
    "ours",
    "mutex",
    "sharded-table",
    "locked-buckets",
    "snapshot-slots",
    "once-slots",
    "atomic-slots",
]

# The targets, as ratios ours/mutex measured in the same run.
TARGETS = [
    ("uniform-100k", 2, 3.0),
    ("gate", 2, 2.0),
    ("hot-key", 2, 1.0),
    # Issue 23's, against the mutex (its other targets compare ours with itself or dashmap-entry).
    ("broker-gate", 1, 1.0),
    ("broker-gate", 2, 3.0),
    ("broker-gate", 8, 2.0),
    ("crash-storm", 2, 1.0),
] + [(workload, 8, 1.0) for workload in WORKLOADS]


def estimates(criterion_dir: Path):
    """(group, implementation, threads, ops/s, estimate's modification time) of every bench
    with a throughput and a thread count; others (if any) are skipped."""
    for benchmark_file in sorted(criterion_dir.glob("*/*/*/new/benchmark.json")):
        benchmark = json.loads(benchmark_file.read_text())
        throughput = benchmark.get("throughput") or {}
        threads = str(benchmark.get("value_str"))
        if "Elements" not in throughput or not threads.isdigit():
            continue
        estimates_file = benchmark_file.with_name("estimates.json")
        median_ns = json.loads(estimates_file.read_text())["median"]["point_estimate"]
        yield (
            benchmark.get("group_id"),
            benchmark.get("function_id"),
            int(threads),
            throughput["Elements"] * 1e9 / median_ns,
            estimates_file.stat().st_mtime,
        )


def load(criterion_dir: Path) -> tuple[dict, list[float]]:
    """{(workload, implementation, threads): ops/s}, and the estimates' modification times."""
    results = {}
    written = []
    for workload, implementation, threads, value, mtime in estimates(criterion_dir):
        if workload in WORKLOADS and implementation in IMPLEMENTATIONS:
            results[(workload, implementation, threads)] = value
            written.append(mtime)
    return results, written


def ceilings(criterion_dir: Path) -> str | None:
    """The ceilings bench's table: each table's ops/s and its ratio to the mutex, per thread
    count, in the bench's order; None if there are no estimates."""
    results = {}
    for group, implementation, threads, value, _ in estimates(criterion_dir):
        if group == CEILINGS_GROUP:
            results[(implementation, threads)] = value
    if not results:
        return None
    names = [name for name in CEILINGS if any(key[0] == name for key in results)]
    names += sorted({name for name, _ in results} - set(CEILINGS))
    counts = sorted({threads for _, threads in results})
    header = " | ".join(f"{t} thr ops/s | {t} thr / mutex" for t in counts)
    lines = [f"| {CEILINGS_GROUP} | {header} |", "|---" + "|---:" * 2 * len(counts) + "|"]
    for name in names:
        cells = []
        for threads in counts:
            value = results.get((name, threads))
            cells += [ops(value), fmt_ratio(ratio(value, results.get(("mutex", threads))))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def levels(criterion_dirs: list[Path], group: str, threads: str) -> str | None:
    """Per implementation of `group` at `threads`: its samples (ns per iteration) pooled over
    `criterion_dirs`, split in two levels (see `split`), with each level's count and median."""
    samples: dict[str, list[float]] = {}
    for criterion_dir in dict.fromkeys(criterion_dirs):
        for sample_file in sorted(criterion_dir.glob(f"{group}/*/{threads}/new/sample.json")):
            sample = json.loads(sample_file.read_text())
            per_iteration = [t / i for t, i in zip(sample["times"], sample["iters"]) if i > 0]
            samples.setdefault(sample_file.parents[2].name, []).extend(per_iteration)
    samples = {name: values for name, values in samples.items() if values}
    if not samples:
        return None
    lines = [
        f"| {group} @ {threads} | samples | fast | fast median ns | slow | slow median ns "
        "| slow / fast | split at ns |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, values in sorted(samples.items()):
        fast, slow = split(values)
        if not slow:
            lines.append(f"| {name} | {len(values)} | {len(fast)} | {median(fast):.0f} "
                         "| 0 | - | - | - |")
            continue
        fast_median, slow_median = median(fast), median(slow)
        lines.append(
            f"| {name} | {len(values)} | {len(fast)} | {fast_median:.0f} | {len(slow)} | "
            f"{slow_median:.0f} | {slow_median / fast_median:.2f}x | {slow[0]:.0f} |"
        )
    return "\n".join(lines) + "\n"


def split(values: list[float]) -> tuple[list[float], list[float]]:
    """`values` sorted and cut in two where the two parts' log-values have the least summed
    squared distance to their means (so a level twice as slow weighs as much as one twice as
    fast); all in the first part if they are all equal."""
    ordered = sorted(values)
    logs = [math.log(max(value, 1e-9)) for value in ordered]
    best_cut, best_cost = len(ordered), math.inf
    for cut in range(1, len(ordered)):
        if logs[cut] == logs[cut - 1]:
            continue
        # Population variance times size: each part's summed squared distance to its mean.
        cost = (pvariance(logs[:cut]) * cut
                + pvariance(logs[cut:]) * (len(logs) - cut))
        if cost < best_cost:
            best_cut, best_cost = cut, cost
    return ordered[:best_cut], ordered[best_cut:]


def ops(value: float | None) -> str:
    """Ops/s with a unit: 12.3 M, 456 k."""
    if value is None:
        return "n/a"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    return f"{value / 1e3:.0f} k"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    return numerator / denominator


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()}"


def table(results: dict, written: list[float], note: str | None) -> str:
    lines = ["# Throughput: ours against the mutex and dashmap-entry baselines", ""]

    def when(timestamp: float) -> str:
        return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")

    lines += [
        f"Generated by `python3 benches/chart.py` from the criterion estimates of "
        f"`cargo bench --bench throughput` written between {when(min(written))} and "
        f"{when(max(written))} (local time; one run of the matrix takes about 5 minutes, so a "
        f"wider span means estimates from several runs). Machine when the table was made: "
        f"{machine()}.",
        "",
        "Operations per second over all threads, from criterion's median time per iteration. "
        "Compare ratios within one run; absolute figures move with the machine's load.",
        "",
    ]
    if note:
        lines += [f"Run note: {note}", ""]
    lines += [
        "| workload | threads | ours ops/s | mutex ops/s | dashmap-entry ops/s "
        "| ours / mutex | ours / dashmap-entry |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        for threads in THREADS:
            row = [results.get((workload, name, threads)) for name in IMPLEMENTATIONS]
            lines.append(
                f"| {workload} | {threads} | "
                + " | ".join(ops(value) for value in row)
                + f" | {fmt_ratio(ratio(row[0], row[1]))} | {fmt_ratio(ratio(row[0], row[2]))} |"
            )
    lines += [
        "",
        "Workloads (see `benches/workloads/mod.rs`): **hot-key**, every thread crashes one key; "
        "**uniform-1k** / **uniform-100k**, crashes spread uniformly over 1,000 / 100,000 existing "
        "keys, each crashed about twice per budget window; **gate**, 99 `status` checks to 1 crash "
        "over 1,000 keys; **churn**, fresh keys inserted, crashed again, then removed by a "
        "success or abandoned to `purge_expired`; **broker-gate**, 999 `status` checks of any of "
        "10,000 backends to 1 crash of the 1% that crash-loop (the only keys with entries); "
        "**crash-storm**, every thread reports each death of one backend through "
        "`record_crash_of` with the same incarnation; **refused-gate**, every thread checks one "
        "backend whose budget is spent. Implementations (see `benches/stores/`): "
        "**ours**, `BackendRecoveryState<u64>` with its defaults; **mutex**, the spec's "
        "`HashMap` behind one `parking_lot::Mutex`; **dashmap-entry**, the spec's entry in a "
        "`DashMap` updated through `entry()`. All use `u64` keys and std's `RandomState`.",
        "",
        "Reproduce: `cargo bench --bench throughput && python3 benches/chart.py` "
        "(chart: `docs/throughput.svg`).",
    ]
    lines += ["", "## Targets (ours / mutex, same run)", ""]
    lines += ["| target | measured | verdict |", "|---|---:|---|"]
    for workload, threads, minimum in TARGETS:
        measured = ratio(
            results.get((workload, "ours", threads)), results.get((workload, "mutex", threads))
        )
        verdict = "n/a" if measured is None else ("met" if measured >= minimum else "**missed**")
        lines.append(
            f"| {workload} @ {threads} threads >= {minimum:g}x | {fmt_ratio(measured)} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about `ticks` ticks to `top`."""
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * power:
            return multiple * power
    return 10 * power


def svg(results: dict) -> str:
    panel_w, panel_h = 300, 220
    margin_l, margin_r, margin_t, margin_b = 58, 14, 30, 38
    columns = 3
    rows = math.ceil(len(WORKLOADS) / columns)
    width, height = columns * panel_w, rows * panel_h + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
        "Throughput against threads (Mops/s, all threads; higher is better)</text>",
    ]
    for index, workload in enumerate(WORKLOADS):
        x0 = (index % columns) * panel_w
        y0 = 24 + (index // columns) * panel_h
        plot_w = panel_w - margin_l - margin_r
        plot_h = panel_h - margin_t - margin_b
        left, top = x0 + margin_l, y0 + margin_t
        values = [
            results[(workload, name, threads)] / 1e6
            for name in IMPLEMENTATIONS
            for threads in THREADS
            if (workload, name, threads) in results
        ]
        peak = max(values, default=1.0) or 1.0
        step = nice_step(peak)
        y_max = step * math.ceil(peak / step)

        def x_at(position: int) -> float:
            return left + plot_w * (position + 0.5) / len(THREADS)

        def y_at(value: float) -> float:
            return top + plot_h * (1 - value / y_max)

        out.append(
            f'<text x="{left + plot_w / 2}" y="{y0 + 18}" text-anchor="middle" '
            f'font-size="12" font-weight="bold">{workload}</text>'
        )
        tick = 0.0
        while tick <= y_max + step / 2:
            y = y_at(tick)
            out.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                'stroke="#ddd" stroke-width="1"/>'
            )
            label = f"{tick:g}" if step >= 1 else f"{tick:.1f}"
            out.append(
                f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
            )
            tick += step
        out.append(
            f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
            'stroke="#888" stroke-width="1"/>'
        )
        for position, threads in enumerate(THREADS):
            out.append(
                f'<text x="{x_at(position):.1f}" y="{top + plot_h + 15}" '
                f'text-anchor="middle">{threads}</text>'
            )
        out.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h + 31}" text-anchor="middle" '
            'fill="#555">threads</text>'
        )
        out.append(
            f'<text transform="translate({x0 + 14},{top + plot_h / 2}) rotate(-90)" '
            'text-anchor="middle" fill="#555">Mops/s</text>'
        )
        for name in IMPLEMENTATIONS:
            points = [
                (x_at(position), y_at(results[(workload, name, threads)] / 1e6))
                for position, threads in enumerate(THREADS)
                if (workload, name, threads) in results
            ]
            if not points:
                continue
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            dash = f' stroke-dasharray="{DASHES[name]}"' if DASHES[name] else ""
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{COLORS[name]}" '
                f'stroke-width="2"{dash}/>'
            )
            for x, y in points:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLORS[name]}"/>')
    # Legend in the cell after the last panel.
    cell = len(WORKLOADS)
    legend_x = (cell % columns) * panel_w + 40
    legend_y = 24 + (cell // columns) * panel_h + 60
    for offset, name in enumerate(IMPLEMENTATIONS):
        y = legend_y + offset * 24
        dash = f' stroke-dasharray="{DASHES[name]}"' if DASHES[name] else ""
        out.append(
            f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 36}" y2="{y}" '
            f'stroke="{COLORS[name]}" stroke-width="2"{dash}/>'
        )
        out.append(f'<circle cx="{legend_x + 18}" cy="{y}" r="3" fill="{COLORS[name]}"/>')
        out.append(f'<text x="{legend_x + 46}" y="{y + 4}" font-size="12">{name}</text>')
    out.append(
        f'<text x="{legend_x}" y="{legend_y + 80}" fill="#555">median of criterion samples</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--criterion", action="append", type=Path)
    parser.add_argument("--svg", default="docs/throughput.svg", type=Path)
    parser.add_argument("--table", default="docs/throughput.md")
    parser.add_argument("--note", default=None)
    parser.add_argument("--ceilings", action="store_true")
    parser.add_argument("--levels", metavar="GROUP/THREADS")
    args = parser.parse_args()
    criterion_dirs = args.criterion or [Path("target/criterion")]

    if args.levels is not None:
        group, _, threads = args.levels.rpartition("/")
        if not group or not threads.isdigit():
            parser.error("--levels takes GROUP/THREADS, e.g. uniform-100k/2")
        if args.ceilings:
            parser.error("--levels and --ceilings are different reports: give one")
        markdown = levels(criterion_dirs, group, threads)
        if markdown is None:
            print(f"no samples of {args.levels} under {', '.join(map(str, criterion_dirs))}",
                  file=sys.stderr)
            return 1
        sys.stdout.write(markdown)
        return 0
    if len(criterion_dirs) > 1:
        print("--criterion may be given more than once only with --levels", file=sys.stderr)
        return 2
    args.criterion = criterion_dirs[0]

    if args.ceilings:
        markdown = ceilings(args.criterion)
        if markdown is None:
            print(f"no ceiling estimates under {args.criterion}: run "
                  "`cargo bench --bench ceilings` first", file=sys.stderr)
            return 1
        sys.stdout.write(markdown)
        return 0

    results, written = load(args.criterion)
    if not results:
        print(
            f"no throughput estimates under {args.criterion}: run "
            "`cargo bench --bench throughput` first",
            file=sys.stderr,
        )
        return 1
    missing = [
        f"{workload}/{name}/{threads}"
        for workload in WORKLOADS
        for name in IMPLEMENTATIONS
        for threads in THREADS
        if (workload, name, threads) not in results
    ]
    if missing:
        print(f"warning: no estimates for {', '.join(missing)}", file=sys.stderr)

    markdown = table(results, written, args.note)
    args.svg.parent.mkdir(parents=True, exist_ok=True)
    args.svg.write_text(svg(results))
    if args.table == "-":
        sys.stdout.write(markdown)
    else:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(markdown)
        sys.stdout.write(markdown)
        print(f"wrote {args.svg} and {args.table}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Results on disk and on screen: CSV per table + one JSON per run, PNG plots, printed and Markdown tables.

Files of one run share a stem, `<date>_<machine label>[_quick]`, in benchmarks/results/ (BENCH_OUT=):
  <stem>_latency.csv, <stem>_serving.csv, <stem>_accuracy.csv   one row per measurement (skipped ones included,
                                                                   with status and the reason in `note`)
  <stem>.json                                                      machine, config, compute, all rows, skips, goals
  <stem>_latency.png, <stem>_serving.png                           plots (matplotlib, Agg)
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Iterable, Optional

__all__ = ["LATENCY_FIELDS", "SERVING_FIELDS", "ACCURACY_FIELDS", "FORMAT", "stem", "write_results",
           "load_results", "plot_latency", "plot_serving", "text_tables", "markdown_tables"]

FORMAT = 1
LATENCY_FIELDS = ["backend", "label", "device", "precision", "timer", "size", "height", "width", "megapixels",
                  "status", "note", "warmup", "runs", "input_sets", "median_ms", "p90_ms", "p99_ms", "mean_ms",
                  "min_ms", "max_ms", "baseline", "speedup_vs_pytorch_fp32", "gmac", "achieved_tflops", "floor_ms",
                  "floor_fraction"]
SERVING_FIELDS = ["tool", "transport", "server", "size", "height", "width", "concurrency", "status", "note",
                  "requests", "duration_s", "throughput_rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "errors",
                  "server_queue_ms", "server_compute_infer_ms", "bare_backend", "bare_p50_ms", "overhead_p50"]
ACCURACY_FIELDS = ["backend", "label", "reference", "size", "scenes", "status", "note", "psnr_l_mean_db",
                   "psnr_l_min_db", "psnr_mu_mean_db", "psnr_mu_min_db", "rel_l2_max", "all_finite"]
TABLES = {"latency": LATENCY_FIELDS, "serving": SERVING_FIELDS, "accuracy": ACCURACY_FIELDS}


def stem(machine: dict, quick: bool, label: Optional[str] = None) -> str:
    return f"{machine['date'][:10]}_{label or machine['label']}{'_quick' if quick else ''}"


def _clean(value):
    """JSON-safe: inf/nan become strings, tuples lists, paths strings."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_results(results: dict, out_dir: Path, name: str) -> dict:
    """Write the three CSVs and the JSON; returns {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for table, fields in TABLES.items():
        path = out_dir / f"{name}_{table}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for row in results.get(table, []):
                writer.writerow({k: _csv_value(row.get(k)) for k in fields})
        files[f"{table}_csv"] = path
    files["json"] = out_dir / f"{name}.json"
    results["files"] = {k: p.name for k, p in files.items()} | results.get("files", {})
    files["json"].write_text(json.dumps(_clean(results), indent=1) + "\n")
    return files


def load_results(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _num(value) -> Optional[float]:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ---- plots -------------------------------------------------------------------------------------------------------

def _machine_line(results: dict) -> str:
    m = results["machine"]
    device = m.get("gpu") or f"{m.get('cpu')}, {m.get('cpu_cores')} cores"
    git = m.get("git", {})
    commit = f", commit {git.get('commit')}{' (dirty)' if git.get('dirty') else ''}" if git.get("commit") else ""
    mode = "QUICK" if results.get("config", {}).get("quick") else "full"
    return f"{m['label']}: {device} | {m['date'][:16].replace('T', ' ')} UTC{commit} | {mode} run"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ticker():
    from matplotlib import ticker

    return ticker


def plot_latency(results: dict, path: Path) -> Optional[Path]:
    """Median latency vs frame size per backend (p90 as the upper bar), and speedup vs PyTorch FP32."""
    rows = [r for r in results.get("latency", []) if r.get("status") == "ok" and _num(r.get("median_ms"))]
    if not rows:
        return None
    plt, ticker = _pyplot(), _ticker()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [1.15, 1]})
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    labels = {r["backend"]: r["label"] for r in rows}
    sizes = sorted({(int(r["height"]), int(r["width"])) for r in rows}, key=lambda s: s[0] * s[1])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, backend in enumerate(backends):
        pts = sorted((r for r in rows if r["backend"] == backend), key=lambda r: _num(r["megapixels"]))
        x = [_num(r["megapixels"]) for r in pts]
        med = [_num(r["median_ms"]) for r in pts]
        p90 = [_num(r["p90_ms"]) or m for r, m in zip(pts, med)]
        color = colors[i % len(colors)]
        ax.errorbar(x, med, yerr=[[0] * len(med), [max(p - m, 0) for p, m in zip(p90, med)]], marker="o",
                    capsize=4, color=color, label=f"{labels[backend]} ({pts[0]['timer']})")
        for xv, m in zip(x, med):
            ax.annotate(f"{m:.4g} ms", (xv, m), textcoords="offset points", xytext=(6, -10), fontsize=7, color=color)
    floors = {}
    for r in rows:  # one floor line per device and precision: 2 x MACs / measured matmul rate
        if _num(r.get("floor_ms")):
            key = f"{'GPU' if r['device'] == 'cuda' else 'CPU'} {r['precision'].upper()}"
            floors.setdefault(key, {})[_num(r["megapixels"])] = _num(r["floor_ms"])
    for key, pts in floors.items():
        xs = sorted(pts)
        ax.plot(xs, [pts[x] for x in xs], ls="--", lw=1, color="gray",
                label=f"FLOP floor, {key} (2·MACs / measured matmul rate)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(x=0.15)
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    mp = [h * w / 1e6 for h, w in sizes]
    ax.set_xticks(mp)
    ax.set_xticklabels([f"{h}×{w}\n{h * w / 1e6:.3g} MP" for h, w in sizes], fontsize=8)
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("frame size (H×W, megapixels)")
    ax.set_ylabel("latency per frame, ms (median; bar up to p90)")
    ax.set_title("Latency vs frame size (batch 1, log-log)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")

    width = 0.8 / max(len(backends), 1)
    labelled = set()
    for i, backend in enumerate(backends):
        for j, size in enumerate(sizes):
            row = next((r for r in rows if r["backend"] == backend and (int(r["height"]), int(r["width"])) == size),
                       None)
            value = _num(row.get("speedup_vs_pytorch_fp32")) if row else None
            if value is None:
                continue
            xpos = j + (i - (len(backends) - 1) / 2) * width
            bx.bar(xpos, value, width=width * 0.95, color=colors[i % len(colors)],
                   label=None if backend in labelled else labels[backend])
            labelled.add(backend)
            bx.annotate(f"{value:.2f}×", (xpos, value), ha="center", va="bottom", fontsize=8)
    bx.axhline(1.0, color="black", lw=0.8, ls=":")
    bx.set_xticks(range(len(sizes)))
    bx.set_xticklabels([f"{h}×{w}" for h, w in sizes])
    bx.set_xlabel("frame size")
    bx.set_ylabel("speedup vs PyTorch eager FP32 (×, higher is better)")
    bx.set_title("Speedup over the PyTorch FP32 baseline (median vs median)")
    bx.grid(True, axis="y", alpha=0.3)
    bx.legend(fontsize=8)
    fig.suptitle("ADNet pipeline latency (LDR uint8 in, linear HDR out)\n" + _machine_line(results), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_serving(results: dict, path: Path) -> Optional[Path]:
    """p50 (solid) and p99 (dashed) latency vs concurrency, and throughput vs concurrency, per tool and transport."""
    rows = [r for r in results.get("serving", []) if r.get("status") == "ok" and _num(r.get("p50_ms"))]
    if not rows:
        return None
    plt, ticker = _pyplot(), _ticker()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.6))
    series = list(dict.fromkeys((r["tool"], r["transport"]) for r in rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = {"grpc": "plain gRPC", "system_shm": "system shm", "cuda_shm": "CUDA shm"}
    levels = sorted({int(r["concurrency"]) for r in rows})
    for i, (tool, transport) in enumerate(series):
        pts = sorted((r for r in rows if (r["tool"], r["transport"]) == (tool, transport)),
                     key=lambda r: int(r["concurrency"]))
        c = [int(r["concurrency"]) for r in pts]
        color = colors[i % len(colors)]
        label = f"{tool}, {names.get(transport, transport)}"
        ax.plot(c, [_num(r["p50_ms"]) for r in pts], marker="o", color=color, label=f"{label}: p50")
        ax.plot(c, [_num(r["p99_ms"]) for r in pts], ls="--", lw=1, marker=".", color=color, label=f"{label}: p99")
        bx.plot(c, [_num(r["throughput_rps"]) for r in pts], marker="o", color=color, label=label)
    bare = next((r for r in rows if _num(r.get("bare_p50_ms"))), None)
    if bare:
        b = _num(bare["bare_p50_ms"])
        ax.axhline(b, color="black", ls=":", lw=1, label=f"bare {bare['bare_backend']} p50 ({b:.0f} ms)")
        ax.axhline(1.15 * b, color="red", ls=":", lw=1, label="CPU goal at c=1: 1.15 × bare")
    for axis in (ax, bx):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels)
        axis.set_xticklabels([str(c) for c in levels])
        axis.minorticks_off()
        axis.set_xlabel("concurrency (requests in flight, closed loop)")
        axis.grid(True, alpha=0.3)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.set_ylabel("latency per request, ms (log)")
    ax.set_title("Client latency vs concurrency")
    ax.legend(fontsize=7)
    bx.set_ylabel("throughput, requests/s (frames/s)")
    bx.set_title("Throughput vs concurrency")
    bx.set_ylim(bottom=0)
    bx.legend(fontsize=8)
    size = rows[0]["size"]
    server = rows[0]["server"]
    fig.suptitle(f"Triton serving, {size} frames, {server}\n" + _machine_line(results), fontsize=10)
    if any(r["tool"] == "perf_analyzer" for r in rows):
        fig.text(0.5, 0.005, "perf_analyzer counts throughput over whole-second windows: coarse for short runs "
                 "(QUICK); loadgen's is requests / elapsed time", ha="center", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# ---- tables ------------------------------------------------------------------------------------------------------

def _fmt(value, spec: str, empty: str = "-") -> str:
    v = _num(value)
    if v is None:
        return empty
    if math.isinf(v):
        return "inf"
    return format(v, spec)


def _table(headers: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return out


def _latency_rows(results):
    for r in results.get("latency", []):
        if r.get("status") == "ok":
            yield [r["label"], r["size"], _fmt(r.get("median_ms"), ".1f"), _fmt(r.get("p90_ms"), ".1f"),
                   _fmt(r.get("p99_ms"), ".1f"), str(r.get("runs", "")), _fmt(r.get("speedup_vs_pytorch_fp32"), ".2f"),
                   _fmt(r.get("achieved_tflops"), ".3f"), _fmt(r.get("floor_fraction"), ".1%"), r.get("timer", "")]


LATENCY_HEADERS = ["backend", "size", "median ms", "p90 ms", "p99 ms", "runs", "speedup", "TFLOP/s", "of floor",
                   "timer"]
SERVING_HEADERS = ["tool", "transport", "c", "requests", "p50 ms", "p90 ms", "p99 ms", "req/s", "p50 / bare"]
ACCURACY_HEADERS = ["backend", "vs", "size", "scenes", "PSNR-l mean (min) dB", "PSNR-mu mean (min) dB",
                    "max rel. L2"]


def _serving_rows(results):
    for r in results.get("serving", []):
        if r.get("status") == "ok":
            yield [r["tool"], r["transport"], str(r["concurrency"]), str(r.get("requests", "")),
                   _fmt(r.get("p50_ms"), ".1f"), _fmt(r.get("p90_ms"), ".1f"), _fmt(r.get("p99_ms"), ".1f"),
                   _fmt(r.get("throughput_rps"), ".2f"), _fmt(r.get("overhead_p50"), ".3f")]


def _accuracy_rows(results):
    for r in results.get("accuracy", []):
        if r.get("status") == "ok":
            yield [r["label"], r["reference"], r["size"], str(r["scenes"]),
                   f"{_fmt(r.get('psnr_l_mean_db'), '.1f')} ({_fmt(r.get('psnr_l_min_db'), '.1f')})",
                   f"{_fmt(r.get('psnr_mu_mean_db'), '.1f')} ({_fmt(r.get('psnr_mu_min_db'), '.1f')})",
                   _fmt(r.get("rel_l2_max"), ".1e")]


def _goal_lines(results) -> list[str]:
    out = []
    for g in results.get("goals", []):
        verdict = {True: "met", False: "NOT met", None: "not measured"}[g.get("met")]
        value = f"{g['value']}" if g.get("value") is not None else "-"
        out.append(f"  [{verdict}] {g['goal']}: {value}{(' (' + g['note'] + ')') if g.get('note') else ''}")
    return out


def text_tables(results: dict) -> str:
    """The run's summary as printed at the end of `make bench`."""
    m = results["machine"]
    compute = results.get("compute", {})
    lines = [f"== ADNet benchmarks: {_machine_line(results)}"]
    if m.get("busy_warning"):
        lines.append(f"!! {m['busy_warning']}")
    macs = compute.get("macs")
    if macs:
        lines.append(f"MACs (hook count at {macs['counted_at'][0]}x{macs['counted_at'][1]}): "
                     f"{macs['per_pixel']:,.0f} per pixel = {macs['tmac_at_1060x1900']:.4f} TMAC at 1060x1900 "
                     f"(docs/design.md: {macs['design_tmac_at_1060x1900']}); deformable convs "
                     f"{macs['dcn_main_tmac_at_1060x1900']:.3f} TMAC")
    for peak in compute.get("matmul", []):
        if peak.get("flops_per_s"):
            lines.append(f"matmul rate {peak['device']} {peak['dtype']}: {peak['flops_per_s'] / 1e12:.3f} TFLOP/s "
                         f"(n={peak['n']}, {peak.get('threads')} threads)")
    sections = [("Latency (batch 1)", LATENCY_HEADERS, list(_latency_rows(results))),
                ("Serving" + (f" ({results['serving'][0]['size']}, {results['serving'][0]['server']})"
                              if results.get("serving") else ""), SERVING_HEADERS, list(_serving_rows(results))),
                ("Accuracy (NTIRE PSNR)", ACCURACY_HEADERS, list(_accuracy_rows(results)))]
    for title, headers, rows in sections:
        lines += ["", f"-- {title}"]
        lines += _table(headers, rows) if rows else ["  (nothing measured)"]
    goals = _goal_lines(results)
    if goals:
        lines += ["", "-- Goals (reported, not asserted)"] + goals
    skipped = results.get("skipped", [])
    if skipped:
        lines += ["", "-- Skipped"]
        lines += [f"  {s['part']}: {s['what']}: {s['reason']}" for s in skipped]
    return "\n".join(lines)


def markdown_tables(results: dict) -> str:
    """The latency, serving and accuracy tables in Markdown (for benchmarks/README.md)."""
    def md(headers, rows):
        rows = list(rows)
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out) if rows else "(nothing measured)"

    parts = [f"Machine: {_machine_line(results)}", "", "Latency (batch 1):", "",
             md(LATENCY_HEADERS, _latency_rows(results)), "", "Serving:", "",
             md(SERVING_HEADERS, _serving_rows(results)), "", "Accuracy (NTIRE PSNR):", "",
             md(ACCURACY_HEADERS, _accuracy_rows(results))]
    goals = _goal_lines(results)
    if goals:
        parts += ["", "Goals:", ""] + [f"- {g.strip()}" for g in goals]
    return "\n".join(parts)

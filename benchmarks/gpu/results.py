"""gpu-check's result files and summary table.

    <out>/<date>_<machine>_gpucheck.json   {"format", "machine", "started", "elapsed_s", "total_budget_s",
                                            "phases": {name: {"status": "pass|fail|skip", "seconds", "budget_s",
                                            "summary" | "reason", ..., "rows": [measurements]}}}
    <out>/<date>_<machine>_gpucheck.csv    one row per phase (kind "phase"), then one per measurement (kind
                                            "measurement": the phases' "rows", with the phase's name)

<machine> is benchmarks.machine.label(): the GPU's name (e.g. nvidia-h100-80gb-hbm3), or cpu-<cores>c-<model>.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from benchmarks.report import _clean, _csv_value

__all__ = ["FORMAT", "stem", "csv_rows", "write", "summary_table", "failed"]

FORMAT = 1
PHASE_FIELDS = ["kind", "phase", "status", "seconds", "budget_s", "summary"]


def stem(machine: dict) -> str:
    return f"{machine['date'][:10]}_{machine['label']}_gpucheck"


def _summary(result: dict) -> str:
    return result.get("summary") or result.get("reason") or ""


def csv_rows(report: dict) -> tuple[list[str], list[dict]]:
    """(field names, rows): the phases first, then every measurement row of every phase."""
    rows, fields = [], list(PHASE_FIELDS)
    for name, result in report["phases"].items():
        rows.append({"kind": "phase", "phase": name, "status": result["status"], "seconds": result.get("seconds"),
                     "budget_s": result.get("budget_s"), "summary": _summary(result)})
    for name, result in report["phases"].items():
        for row in result.get("rows", []):
            rows.append({"kind": "measurement", "phase": name, **row})
            fields += [key for key in row if key not in fields]
    return fields, rows


def write(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write the JSON and the CSV; returns {"json": path, "csv": path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = stem(report["machine"])
    files = {"json": out_dir / f"{name}.json", "csv": out_dir / f"{name}.csv"}
    fields, rows = csv_rows(report)
    with open(files["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in fields})
    files["json"].write_text(json.dumps(_clean(report), indent=1, default=str) + "\n")
    return files


def failed(report: dict) -> list[str]:
    return [name for name, result in report["phases"].items() if result["status"] == "fail"]


def summary_table(report: dict, width: int = 100) -> str:
    """A plain-text table: phase, status, seconds / budget, the summary or the reason."""
    lines = [f"{'phase':14} {'status':6} {'time / budget':>15}  summary", "-" * (40 + width)]
    for name, result in report["phases"].items():
        seconds = result.get("seconds") or 0.0
        text = _summary(result).replace("\n", " ")
        text = text if len(text) <= width else text[:width - 3] + "..."
        lines.append(f"{name:14} {result['status'].upper():6} {seconds:7.1f} / {result.get('budget_s', 0):4.0f} s  "
                     f"{text}")
    statuses = [r["status"] for r in report["phases"].values()]
    lines.append("-" * (40 + width))
    lines.append(f"{statuses.count('pass')} passed, {statuses.count('fail')} failed, {statuses.count('skip')} skipped "
                 f"in {report.get('elapsed_s', 0):.0f} s (budget {report.get('total_budget_s', 0):.0f} s) on "
                 f"{report['machine'].get('gpu') or report['machine']['label']}")
    return "\n".join(lines)

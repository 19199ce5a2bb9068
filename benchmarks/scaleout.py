"""Scale-out benchmark: throughput of N local CPU replicas behind HAProxy vs N and the client's concurrency.

    python -m benchmarks.scaleout [--quick] [--replicas 3] [--concurrency 1,2,4,8] [--size 64x96] [--requests 48]

Starts `--replicas` CPU Triton replicas once (model_repository/replicas.py, what `make serve REPLICAS=N` runs) and,
for n = 1..N, an HAProxy balancer over the first n of them; the client (client/infer.py, infer_many over one gRPC
connection to the balancer) sends `--requests` scenes at each concurrency. Writes <out>/<date>_<machine>[_quick]
_scaleout.csv and .png (throughput and median latency vs concurrency, one line per replica count).

Replicas on one machine share its cores: every tritonserver runs ONNX Runtime on all of them, so on a 2-core CI
machine more replicas add queueing capacity and failover, not throughput; the numbers show the balancer's cost and
its fairness, and scale with replicas only on machines (or pods) with cores to spare.
"""
from __future__ import annotations

import argparse
import csv
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from benchmarks import machine, report
from benchmarks.inputs import format_size, parse_size
from client.infer import HDRClient
from client.synthetic import make_scene
from deploy.balancer.haproxy import HaproxyBalancer
from model_repository.instance import free_port_block
from model_repository.replicas import ReplicaSet
from model_repository.server import free_port

__all__ = ["run", "main", "FIELDS"]

FIELDS = ["replicas", "concurrency", "size", "requests", "failed", "seconds", "throughput_per_s", "p50_ms", "p95_ms",
          "per_replica", "cpu_cores", "check"]


def _measure(url: str, scenes: list, concurrency: int, requests: int) -> dict:
    items = [scenes[i % len(scenes)] for i in range(requests)]
    with HDRClient(url, timeout=300) as client:
        client.wait_until_ready(timeout=60)
        list(client.infer_many(items[:concurrency], concurrency=concurrency, progress=False))  # warm-up
        start = time.monotonic()
        results = list(client.infer_many(items, concurrency=concurrency, progress=False))
        seconds = time.monotonic() - start
    ok = [r.seconds for r in results if r.ok]
    return {"requests": requests, "failed": requests - len(ok), "seconds": round(seconds, 3),
            "throughput_per_s": round(len(ok) / seconds, 3) if seconds > 0 else None,
            "p50_ms": round(float(np.percentile(ok, 50)) * 1e3, 1) if ok else None,
            "p95_ms": round(float(np.percentile(ok, 95)) * 1e3, 1) if ok else None}


def _successes_since(fleet, before: dict, n: int, expected: int, wait_s: float = 5.0) -> list[int]:
    """Successes of each of the first n replicas since `before`, once they add up to `expected` (requests + warm-up)
    or after wait_s: Triton counts a request when it releases it, which can be just after the client has its answer,
    so a read right after the last response may still miss it."""
    deadline = time.monotonic() + wait_s
    while True:
        after = fleet.request_counts()
        counts = [after[r.name].get("success", 0) - before[r.name] for r in fleet.replicas[:n]]
        if sum(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def run(onnx: Path, replicas: int, concurrencies: tuple[int, ...], size: tuple[int, int], requests: int,
        work: Path, log=print) -> list[dict]:
    scenes = [make_scene(*size, name=f"s{i}", seed=9000 + i) for i in range(4)]
    rows = []
    with ReplicaSet(onnx, replicas, first_port=free_port_block(4 * replicas), listen_port=free_port(),
                    stage=work / "replicas") as fleet:
        for n in range(1, replicas + 1):
            with HaproxyBalancer(fleet.replicas[:n], listen_port=free_port(), stage=work / f"haproxy{n}",
                                 check=fleet.check) as balancer:
                balancer.wait_until_up(60)
                for concurrency in concurrencies:
                    before = {k: c.get("success", 0) for k, c in fleet.request_counts().items()}
                    row = {"replicas": n, "concurrency": concurrency, "size": format_size(size),
                           **_measure(balancer.grpc_url, scenes, concurrency, requests),
                           "cpu_cores": machine.cpu_count(), "check": fleet.check}
                    counts = _successes_since(fleet, before, n, expected=row["requests"] - row["failed"] + concurrency)
                    row["per_replica"] = " ".join(map(str, counts))
                    log(f"replicas {n}, concurrency {concurrency:2d}: {row['throughput_per_s']} scenes/s, "
                        f"p50 {row['p50_ms']} ms, per replica {row['per_replica']}, failed {row['failed']}")
                    rows.append(row)
    return rows


def plot(rows: list[dict], path: Path, title: str) -> Optional[Path]:
    rows = [r for r in rows if r.get("throughput_per_s")]
    if not rows:
        return None
    plt = report._pyplot()
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(10, 4))
    for n in sorted({r["replicas"] for r in rows}):
        mine = sorted((r for r in rows if r["replicas"] == n), key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in mine]
        ax_t.plot(xs, [r["throughput_per_s"] for r in mine], marker="o", label=f"{n} replica(s)")
        ax_l.plot(xs, [r["p50_ms"] for r in mine], marker="o", label=f"{n} replica(s)")
    ax_t.set(xlabel="client concurrency", ylabel="scenes / s", title="throughput")
    ax_l.set(xlabel="client concurrency", ylabel="ms", title="median latency")
    for ax in (ax_t, ax_l):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.replace(" ", ",").split(",") if v)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--quick", action="store_true", help="32x48 scenes, concurrency 1,4,8, 16 requests per level")
    p.add_argument("--onnx", type=Path, default=Path("build/adnet.onnx"))
    p.add_argument("--replicas", type=int, default=3, help="measure 1..N replicas (default 3)")
    p.add_argument("--concurrency", type=_ints, help="client concurrency levels (default 1,2,4,8)")
    p.add_argument("--size", type=parse_size, help="scene size HxW (default 64x96)")
    p.add_argument("--requests", type=int, help="scenes per level (default 48)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--work", type=Path, default=Path("build/bench/scaleout"))
    p.add_argument("--label", help="machine label in file names (default: from the CPU name)")
    p.add_argument("--no-plots", dest="plots", action="store_false")
    args = p.parse_args(argv)
    if args.replicas < 1:
        p.error("--replicas must be >= 1")
    if not args.onnx.is_file():
        print(f"error: {args.onnx} not found: export it with `make onnx`", file=sys.stderr)
        return 1
    concurrencies = args.concurrency or ((1, 4, 8) if args.quick else (1, 2, 4, 8))
    size = args.size or ((32, 48) if args.quick else (64, 96))
    requests = args.requests or (16 if args.quick else 48)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine.describe()
    print(f"scale-out: 1..{args.replicas} CPU replicas behind HAProxy, {format_size(size)} scenes, concurrency "
          f"{','.join(map(str, concurrencies))}, {requests} requests per level; {info['cpu_cores']} CPU cores shared "
          "by every replica (they bound the throughput)")
    try:
        rows = run(args.onnx, args.replicas, concurrencies, size, requests, args.work)
    except Exception as exc:  # a replica or HAProxy did not start: say why, exit 1
        print(f"error: scale-out benchmark: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{report.stem(info, args.quick, args.label)}_scaleout"
    csv_path = args.out / f"{name}.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {csv_path}")
    if args.plots:
        png = plot(rows, args.out / f"{name}.png",
                   f"{info['cpu']} ({info['cpu_cores']} cores shared by all replicas), {format_size(size)} scenes")
        if png:
            print(f"wrote {png}")
    return 3 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

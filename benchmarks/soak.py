"""Soak: the supervised CPU Triton server under steady load for minutes; failures and resident memory over time.

Starts the manager's TritonServer (watchdog on, as `make serve` runs it) on free loopback ports, sends fresh random
scenes of a few sizes from `--concurrency` (8) threads for `--seconds` (300; `--quick`: 30), and samples once a second
the resident memory (VmRSS from /proc) of tritonserver and of its python stub(s), the requests answered and the
failures. Writes <stem>_soak.csv and <stem>_soak.png to --out and prints PASS/FAIL against "0 failures, flat memory"
(the last fifth's mean resident memory within 10 % and 64 MiB of the mean just after warm-up). It asserts nothing:
it is a benchmark.

CLI: python -m benchmarks.soak [--quick] [--seconds 300] [--concurrency 8] [--sizes 32x48,64x96]
     [--onnx build/adnet.onnx] [--out benchmarks/results] [--work build/bench/soak]
"""
from __future__ import annotations

import argparse
import csv
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np

from benchmarks import machine
from client import contract

FLAT_RATIO, FLAT_MIB = 0.10, 64.0
WARMUP_FRACTION = 0.2


def rss_mib(pid: int) -> float:
    return machine.process_memory_mib(pid).get("VmRSS", 0.0)


def server_memory(server) -> tuple[float, float]:
    """(tritonserver, python stubs) resident MiB of `server` right now."""
    from model_repository.supervisor import stub_pids

    process = server.process
    if process is None:
        return 0.0, 0.0
    return rss_mib(process.pid), sum(rss_mib(p) for p in stub_pids(process.pid))


def _sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        h, _, w = part.strip().lower().partition("x")
        if not (h.isdigit() and w.isdigit()) or min(int(h), int(w)) < contract.MIN_SIDE:
            raise argparse.ArgumentTypeError(f"expected HxW,HxW with sides >= {contract.MIN_SIDE}, got {text!r}")
        sizes.append((int(h), int(w)))
    return sizes


class Load:
    """`concurrency` threads sending requests until `stop`; counts answers and failures (by message)."""

    def __init__(self, url: str, sizes, concurrency: int, timeout: float):
        self.url, self.sizes, self.timeout = url, sizes, timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: Counter = Counter()
        self.threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(concurrency)]

    def _worker(self, index: int) -> None:
        import tritonclient.grpc as grpcclient

        rng = np.random.default_rng()
        with grpcclient.InferenceServerClient(self.url) as client:
            while not self.stop.is_set():
                h, w = self.sizes[rng.integers(len(self.sizes))]
                ldr = rng.integers(0, 256, (1, contract.NUM_FRAMES, h, w, contract.NUM_COLORS), dtype=np.uint8)
                ev = np.sort(rng.uniform(-3, 3, (1, 3)), axis=1).astype(np.float32)
                inputs = [grpcclient.InferInput(contract.INPUT_LDR, list(ldr.shape), "UINT8"),
                          grpcclient.InferInput(contract.INPUT_EV, list(ev.shape), "FP32")]
                inputs[0].set_data_from_numpy(ldr)
                inputs[1].set_data_from_numpy(ev)
                try:
                    hdr = client.infer(contract.MODEL_NAME, inputs, client_timeout=self.timeout).as_numpy(
                        contract.OUTPUT_HDR)
                    good = hdr is not None and hdr.shape == (1, h, w, 3) and bool(np.isfinite(hdr).all())
                    error = None if good else f"wrong answer {None if hdr is None else hdr.shape}"
                except Exception as exc:  # every failure is counted, by its first line
                    error = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
                with self.lock:
                    if error is None:
                        self.ok += 1
                    else:
                        self.failures[error] += 1

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout + 10)

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.ok, sum(self.failures.values())


def verdict(rows: list[dict], failures: int) -> tuple[bool, str]:
    totals = [r["rss_total_mib"] for r in rows]
    if len(totals) < 10:
        return False, f"too few samples ({len(totals)}) to judge memory"
    start = int(len(totals) * WARMUP_FRACTION)
    early = float(np.mean(totals[start:start + max(len(totals) // 5, 1)]))
    late = float(np.mean(totals[-max(len(totals) // 5, 1):]))
    growth = late - early
    flat = growth <= FLAT_MIB and growth <= FLAT_RATIO * early if early > 0 else False
    text = (f"{failures} failure(s); resident memory after warm-up {early:.0f} MiB, at the end {late:.0f} MiB "
            f"({growth:+.0f} MiB; flat means within {FLAT_MIB:.0f} MiB and {FLAT_RATIO:.0%})")
    return failures == 0 and flat, text


def plot(rows: list[dict], path: Path, title: str) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    t = [r["t_s"] for r in rows]
    fig, (mem, req) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    mem.plot(t, [r["rss_triton_mib"] for r in rows], label="tritonserver")
    mem.plot(t, [r["rss_stubs_mib"] for r in rows], label="python stub(s)")
    mem.plot(t, [r["rss_total_mib"] for r in rows], label="total", linewidth=2)
    mem.set_ylabel("resident MiB")
    mem.legend(loc="upper left")
    mem.grid(alpha=0.3)
    req.plot(t, [r["answered"] for r in rows], label="answered")
    req.plot(t, [r["failures"] for r in rows], label="failures", color="tab:red")
    req.set_ylabel("requests (cumulative)")
    req.set_xlabel("seconds")
    req.legend(loc="upper left")
    req.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    from benchmarks import machine, report
    from model_repository.server import ROOT, ServerError, cpu_server, free_port

    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~30 s instead of 300 s")
    parser.add_argument("--seconds", type=float, help="duration of the load (default 300, --quick 30)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sizes", type=_sizes, default=_sizes("32x48,64x96"), help="frame sizes, HxW,HxW")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request client deadline, s")
    parser.add_argument("--onnx", default=str(ROOT / "build" / "adnet.onnx"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--work", default=str(ROOT / "build" / "bench" / "soak"))
    args = parser.parse_args(argv)
    seconds = args.seconds or (30.0 if args.quick else 300.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine.describe()
    stem = report.stem(info, args.quick)

    try:
        server = cpu_server(args.onnx, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                            stage=Path(args.work))
        server.start()
    except ServerError as exc:
        print(f"soak: error: {exc}")
        return 1
    rows: list[dict] = []
    load = Load(server.grpc_url, args.sizes, args.concurrency, args.timeout)
    print(f"soak: {seconds:.0f} s, concurrency {args.concurrency}, sizes "
          f"{', '.join(f'{h}x{w}' for h, w in args.sizes)}, server {server.grpc_url}", flush=True)
    try:
        start = time.monotonic()
        load.start()
        while (now := time.monotonic() - start) < seconds:
            triton, stubs = server_memory(server)
            ok, failed = load.counts()
            status = server.status()
            rows.append({"t_s": round(now, 2), "answered": ok, "failures": failed,
                         "rss_triton_mib": round(triton, 1), "rss_stubs_mib": round(stubs, 1),
                         "rss_total_mib": round(triton + stubs, 1), "ready": int(bool(status["ready"])),
                         "reloads": status["reloads"], "restarts": status["restarts"]})
            time.sleep(1.0)
        load.join()
    finally:
        final = server.status()
        server.stop()
    ok, failed = load.counts()
    csv_path = out / f"{stem}_soak.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    passed, text = verdict(rows, failed)
    title = (f"Soak: Triton CPU (supervised), concurrency {args.concurrency}, "
             f"{', '.join(f'{h}x{w}' for h, w in args.sizes)}, {seconds:.0f} s\n{info['label']}, {info['date'][:16]}")
    png = plot(rows, out / f"{stem}_soak.png", title)
    print(f"soak: {ok} answered ({ok / seconds:.1f}/s), reloads {final['reloads']}, restarts {final['restarts']}")
    for message, count in load.failures.most_common(5):
        print(f"soak: failure x{count}: {message}")
    print(f"soak: {'PASS' if passed else 'FAIL'} (0 failures, flat memory): {text}")
    print(f"soak: wrote {csv_path}{f', {png}' if png else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

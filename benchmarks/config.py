"""What a benchmark run measures: sizes, run counts, concurrency levels, paths; defaults per mode and machine.

| setting                 | QUICK=1 (CPU)      | full, CPU                         | full, GPU                     |
|-------------------------|--------------------|-----------------------------------|-------------------------------|
| latency sizes           | 64x96, 128x192     | 128x192, 256x256 (big ones skipped) | 256x256, 1000x1500, 1060x1900 |
| warm-up / runs / cap    | 1 / 5 / 8 s        | 2 / 20 / 60 s                     | 5 / 50 / 60 s                 |
| serving size            | 64x96              | 128x192                           | 128x192 (1060x1900 with URL=) |
| concurrency             | 1, 2, 4            | 1, 2, 4, 8, 16                    | 1, 2, 4, 8, 16                |
| requests per level      | max(6, 3c), 10 s   | max(16, 4c), 60 s                 | max(16, 4c), 60 s             |
| accuracy                | 2 scenes, 64x96    | 3 scenes, 256x256                 | 3 scenes, 256x256             |

QUICK on a GPU machine uses 256x256 and 1060x1900. CPU backends skip frames above 256x256 (minutes per frame on a
few cores) unless the sizes were given explicitly (SIZES=).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from benchmarks.inputs import format_size, parse_size

__all__ = ["BenchConfig", "PARTS", "KALANTARI", "NTIRE", "CPU_MAX_PIXELS", "parse_sizes", "make_config"]

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("latency", "serving", "accuracy")
KALANTARI = (1000, 1500)
NTIRE = (1060, 1900)
GPU_SIZES = ((256, 256), KALANTARI, NTIRE)
CPU_MAX_PIXELS = 256 * 256  # larger frames on CPU backends only when asked for (SIZES=)


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'64x96,128x192' -> ((64, 96), (128, 192))."""
    return tuple(parse_size(t) for t in str(text).replace(" ", ",").split(",") if t)


@dataclass
class BenchConfig:
    quick: bool = False
    sizes: tuple = ()                 # () = the mode's default
    sizes_explicit: bool = False      # given by the user: CPU backends run them even when large
    skipped_sizes: tuple = ()         # ((size, reason), ...) filled by defaults()
    serving_size: Optional[tuple] = None
    concurrency: tuple = ()
    warmup: int = 1
    runs: int = 5
    min_runs: int = 3
    max_seconds: float = 8.0          # per (backend, size): the run count is cut to fit
    input_sets: int = 2
    serving_requests: int = 6         # per level at least; 3 x concurrency in QUICK, 4 x in full
    serving_per_client: int = 3
    serving_max_seconds: float = 10.0
    accuracy_size: tuple = (64, 96)
    accuracy_scenes: int = 2
    data: Optional[Path] = None       # NTIRE-format folder for the accuracy part
    data_limit: int = 2
    parts: tuple = PARTS
    perf_analyzer: bool = True
    out: Path = ROOT / "benchmarks" / "results"
    work: Path = ROOT / "build" / "bench"
    onnx: Path = ROOT / "build" / "adnet.onnx"
    onnx_fp16: Path = ROOT / "build" / "adnet_fp16.onnx"
    onnx_plugin: Path = ROOT / "build" / "adnet_dcn_plugin.onnx"
    onnx_plugin_fp16: Path = ROOT / "build" / "adnet_dcn_plugin_fp16.onnx"
    plan: Path = ROOT / "model_repository" / "gpu" / "adnet" / "1" / "model.plan"
    builtin_plan: Path = ROOT / "build" / "bench" / "adnet_builtin_dcn.plan"
    url: Optional[str] = None         # an already running server (e.g. the GPU Triton); else a CPU one is started
    label: Optional[str] = None       # machine label override for file names
    plots: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, Path):
                d[key] = str(value)
        d["sizes"] = [format_size(s) for s in self.sizes]
        d["skipped_sizes"] = [{"size": format_size(s), "reason": r} for s, r in self.skipped_sizes]
        d["serving_size"] = format_size(self.serving_size) if self.serving_size else None
        d["accuracy_size"] = format_size(self.accuracy_size)
        d["concurrency"] = list(self.concurrency)
        d["parts"] = list(self.parts)
        return d

    def requests_at(self, concurrency: int) -> int:
        return max(self.serving_requests, self.serving_per_client * concurrency)


def make_config(*, quick: bool, gpu: bool, cpu_cores: int, **overrides) -> BenchConfig:
    """The mode's defaults (QUICK or full) for this machine (GPU or not), then `overrides` (BenchConfig fields; None
    means "not given"). Sizes given explicitly are run on every backend, large ones on the CPU too."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - set(BenchConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown benchmark settings: {', '.join(sorted(unknown))}")
    if quick:
        mode = dict(warmup=1, runs=5, max_seconds=8.0, input_sets=2, serving_requests=6, serving_per_client=3,
                    serving_max_seconds=10.0, accuracy_scenes=2, accuracy_size=(64, 96),
                    sizes=((256, 256), NTIRE) if gpu else ((64, 96), (128, 192)),
                    serving_size=(64, 96), concurrency=(1, 2, 4))
    else:
        mode = dict(warmup=5 if gpu else 2, runs=50 if gpu else 20, max_seconds=60.0, input_sets=3,
                    serving_requests=16, serving_per_client=4, serving_max_seconds=60.0, accuracy_scenes=3,
                    accuracy_size=(256, 256), sizes=GPU_SIZES if gpu else ((128, 192), (256, 256)),
                    serving_size=NTIRE if gpu and overrides.get("url") else (128, 192), concurrency=(1, 2, 4, 8, 16))
    skipped = []
    if "sizes" in overrides:
        mode["sizes_explicit"] = True
    elif not gpu and not quick:
        reason = (f"not run on this {cpu_cores}-core CPU: ADNet needs minutes per frame at this size "
                  f"(6.6 TMAC at 1060x1900); ask for it with SIZES=")
        skipped = [(s, reason) for s in GPU_SIZES if s not in mode["sizes"]]
    return BenchConfig(quick=quick, skipped_sizes=tuple(skipped), **{**mode, **overrides})

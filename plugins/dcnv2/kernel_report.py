"""Static report of the AdnetDCNv2 CUDA kernels (`make kernel-report`): per kernel and GPU target, registers, shared
memory, spills, the resulting blocks per SM, and the SASS mix of the gather (vector vs scalar global loads, SASS
instructions per column entry), read with cuobjdump and nvdisasm (PyPI nvidia-cuda-cuobjdump/-nvdisasm, pinned in
requirements.txt). No GPU needed; make builds the objects and calls

    python -m plugins.dcnv2.kernel_report --kernels OBJ --probes OBJ --cuobjdump PATH --nvdisasm PATH --out DIR

Instructions per column entry come from probe kernels (dcnv2_kernel_probe.cu) that run exactly one unit of gather
work: the fast path's segment (8 entries) minus its per-pixel setup, and the generic kernel's entry plus its tap
shared by the 8 channels of an ADNet group. They count static SASS instructions of straight-line code, so they are
what one unit costs to issue (loop control and the MMA are not in them).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plugins.dcnv2.errors import PluginBuildError

# Per-SM limits (CUDA programming guide, compute capabilities table): registers, shared memory (bytes, per SM and
# the most one block may opt in to), resident blocks and threads.
ARCHS = {
    "sm_80": dict(regs=65536, smem=167936, smem_block=166912, blocks=32, threads=2048),
    "sm_90": dict(regs=65536, smem=233472, smem_block=232448, blocks=32, threads=2048),
}
RESERVED_SMEM = 1024  # shared memory the driver reserves per block (sm_80+)
THREADS = 256         # both kernels' block size
# Dynamic shared memory of the fast path at ADNet's layer (C 64, dg 8, 3x3, Cout 64; dcnv2_kernel_v2.cuh): 2 x 128 x
# 72 halves of columns + 72 segments of 16 bytes, plus the weights: resident (64 x (576 + 8) halves) where two blocks
# per SM still fit, as the launcher decides, else two streamed step buffers (2 x 64 x 72 halves).
FAST_COLUMNS = 2 * 128 * 72 * 2 + 72 * 16
FAST_RESIDENT = 64 * (576 + 8) * 2 + FAST_COLUMNS
FAST_STREAMED = 2 * 64 * 72 * 2 + FAST_COLUMNS


def fast_dynamic_smem(arch: str) -> int:
    budget = min(ARCHS[arch]["smem"] // 2 - RESERVED_SMEM, ARCHS[arch]["smem_block"])
    return FAST_RESIDENT if FAST_RESIDENT <= budget else FAST_STREAMED
ENTRIES_PER_SEGMENT = 8
ADNET_CHANNELS_PER_GROUP = 8

KERNELS = {  # mangled-name fragment -> report name
    "dcnFastKernel": "v2 fast path (FP16, channels-last)",
    "dcnForwardKernelI6__half": "v1 generic FP16",
    "dcnForwardKernelIf": "v1 generic FP32",
}


@dataclass
class KernelRow:
    kernel: str
    arch: str
    registers: int
    static_smem: int
    dynamic_smem: int
    spill_bytes: int
    blocks_per_sm: int
    occupancy: float
    sass: int
    ldg128: int
    ldg_scalar16: int
    ldg_other: int
    sts128: int
    hmma: int
    mix: dict = field(default_factory=dict)


def _run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise PluginBuildError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result.stdout


def extract_cubins(cuobjdump: str, obj: Path, out: Path) -> dict[str, Path]:
    """{arch: cubin} of an object file (cuobjdump -xelf all)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([cuobjdump, "-xelf", "all", str(obj.resolve())], cwd=out, capture_output=True, text=True,
                   check=True)
    cubins = {}
    for path in sorted(out.glob("*.cubin")):
        match = re.search(r"sm_(\d+)", path.name)
        if match and obj.stem in path.name:
            cubins[f"sm_{match.group(1)}"] = path
    return cubins


def resource_usage(cuobjdump: str, cubin: Path) -> dict[str, dict]:
    """{mangled function: {REG, SHARED, LOCAL, STACK}} from cuobjdump -res-usage."""
    usage, current = {}, None
    for line in _run([cuobjdump, "-res-usage", str(cubin)]).splitlines():
        match = re.search(r"Function ([\w$]+):", line)
        if match:
            current = match.group(1)
            continue
        if current and "REG:" in line:
            usage[current] = {k: int(v) for k, v in re.findall(r"(REG|SHARED|LOCAL|STACK):(\d+)", line)}
    return usage


def sass_by_function(nvdisasm: str, cubin: Path) -> dict[str, list[str]]:
    """{mangled function: [opcode with modifiers, ...]} (NOPs and the trailing self-branch left out)."""
    functions, current = {}, None
    for line in _run([nvdisasm, "-c", str(cubin)]).splitlines():
        header = re.match(r"\s*\.text\.([\w$]+):", line) or re.match(r"\s*([\w$]+):\s*$", line)
        if header and not header.group(1).startswith(".L"):
            current = header.group(1)
            functions.setdefault(current, [])
            continue
        match = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if current and match:
            opcode = match.group(1)
            if opcode != "NOP":
                functions[current].append(opcode)
    for name, ops in functions.items():
        while ops and ops[-1] == "BRA":  # the `BRA self` that ends each function
            ops.pop()
    return functions


def occupancy(arch: str, registers: int, smem: int) -> tuple[int, float]:
    limits = ARCHS[arch]
    per_warp = -(-registers * 32 // 256) * 256  # registers are allocated per warp in units of 256
    by_regs = limits["regs"] // (per_warp * (THREADS // 32)) if registers else limits["blocks"]
    by_smem = limits["smem"] // (smem + RESERVED_SMEM) if smem <= limits["smem_block"] else 0
    blocks = min(by_regs, by_smem, limits["blocks"], limits["threads"] // THREADS)
    return blocks, blocks * THREADS / limits["threads"]


def mix(ops: list[str]) -> dict:
    def count(pattern):
        return sum(1 for op in ops if re.fullmatch(pattern, op))
    return {
        "ldg128": count(r"LDG\.E\.128.*"),
        "ldg_scalar16": count(r"LDG\.E\.(U16|S16)(\..*)?"),
        "ldg_other": count(r"LDG.*") - count(r"LDG\.E\.128.*") - count(r"LDG\.E\.(U16|S16)(\..*)?"),
        "sts128": count(r"STS\.128.*"),
        "hmma": count(r"HMMA.*"),
    }


def report(kernels_obj: Path, probes_obj: Path, cuobjdump: str, nvdisasm: str, work: Path) -> dict:
    rows, probes = [], {}
    for obj, is_probe in ((kernels_obj, False), (probes_obj, True)):
        for arch, cubin in extract_cubins(cuobjdump, obj, work / obj.stem).items():
            if arch not in ARCHS:
                continue
            usage = resource_usage(cuobjdump, cubin)
            sass = sass_by_function(nvdisasm, cubin)
            for mangled, ops in sass.items():
                if is_probe:
                    probe = re.search(r"probe(FastSegment|FastPixel|GenericEntry|GenericTap)", mangled)
                    if probe:
                        probes.setdefault(arch, {})[probe.group(0)] = len(ops)
                    continue
                name = next((v for k, v in KERNELS.items() if k in mangled), None)
                if name is None:
                    continue
                res = usage.get(mangled, {})
                dynamic = fast_dynamic_smem(arch) if "dcnFastKernel" in mangled else 0
                smem = res.get("SHARED", 0) + dynamic
                blocks, occ = occupancy(arch, res.get("REG", 0), smem)
                counts = mix(ops)
                rows.append(KernelRow(name, arch, res.get("REG", 0), res.get("SHARED", 0), dynamic,
                                      res.get("LOCAL", 0) + res.get("STACK", 0), blocks, occ, len(ops), **counts,
                                      mix=dict(sorted(_top(ops).items()))))
    per_entry = {}
    for arch, p in probes.items():
        fast = (p.get("probeFastSegment", 0) - p.get("probeFastPixel", 0)) / ENTRIES_PER_SEGMENT
        generic = p.get("probeGenericEntry", 0) + p.get("probeGenericTap", 0) / ADNET_CHANNELS_PER_GROUP
        per_entry[arch] = {"v2 fast path": round(fast, 1), "v1 generic FP16": round(generic, 1), "probes": p}
    return {"kernels": [asdict(r) for r in rows], "sass_per_column_entry": per_entry,
            "notes": {"dynamic_smem": "fast path at ADNet's layer (weights resident where 2 blocks/SM fit)",
                      "per_entry": "static SASS of one gather unit per column entry (probe kernels)"}}


def _top(ops: list[str], n: int = 12) -> dict:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op.split(".")[0]] = counts.get(op.split(".")[0], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:n])


def markdown(data: dict) -> str:
    lines = ["| kernel | arch | regs | smem static + dynamic | spills | blocks/SM | occupancy | SASS | LDG.128 | "
             "scalar 16-bit LDG | other LDG | STS.128 | HMMA |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["kernels"]:
        lines.append(f"| {r['kernel']} | {r['arch']} | {r['registers']} | {r['static_smem']} + {r['dynamic_smem']} | "
                     f"{r['spill_bytes']} | {r['blocks_per_sm']} | {r['occupancy']:.0%} | {r['sass']} | "
                     f"{r['ldg128']} | {r['ldg_scalar16']} | {r['ldg_other']} | {r['sts128']} | {r['hmma']} |")
    lines += ["", "SASS instructions per column entry (probe kernels):", ""]
    for arch, v in data["sass_per_column_entry"].items():
        lines.append(f"- {arch}: v2 fast path {v['v2 fast path']}, v1 generic FP16 {v['v1 generic FP16']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugins.dcnv2.kernel_report", description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=Path, required=True, help="dcnv2_kernel.o (make kernels)")
    parser.add_argument("--probes", type=Path, required=True, help="dcnv2_kernel_probe.o")
    parser.add_argument("--cuobjdump", required=True)
    parser.add_argument("--nvdisasm", required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for kernel-report.json / .md")
    args = parser.parse_args(argv)
    tools = [str(Path(t).resolve()) if "/" in t else t for t in (args.cuobjdump, args.nvdisasm)]
    try:
        data = report(args.kernels, args.probes, *tools, args.out / "cubins")
    except (PluginBuildError, subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"kernel-report: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernel-report.json").write_text(json.dumps(data, indent=2) + "\n")
    text = markdown(data)
    (args.out / "kernel-report.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

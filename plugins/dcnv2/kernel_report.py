"""Static report of the AdnetDCNv2 CUDA kernels (`make kernel-report`): per kernel and GPU target, registers, shared
memory, spills, the resulting blocks per SM, and the SASS mix of the gather (vector vs scalar global loads, SASS
instructions per column entry), read with cuobjdump and nvdisasm (PyPI nvidia-cuda-cuobjdump / -nvdisasm, pinned in
requirements.txt). No GPU needed; make builds the objects and calls

    python -m plugins.dcnv2.kernel_report --kernels OBJ --probes OBJ --library SO --cuobjdump PATH --nvdisasm PATH \
        --out DIR

How it counts:
- Shared memory of the fast path is the launcher's own plan at ADNet's layer (the kernels library's host function
  adnet_dcn_fast_shared_bytes, with the two-blocks-per-SM budget of each target): weights resident on sm_90,
  streamed on sm_80. Blocks per SM follow the CUDA occupancy rules from registers, shared memory (plus the 1 KB the
  driver reserves per block) and threads.
- Instructions per column entry come from the probe kernels (dcnv2_kernel_probe.cu), which run the kernels' own
  device functions for one unit of gather work: 8 column entries that one sampling serves (ADNet: 8 channels of a
  deformable group at one tap); the fast path's segment, the generic kernel's tap plus 8 times its entry. Counted are
  the static SASS instructions of each probe's hot path (up to its last EXIT: the out-of-line slow paths of IEEE
  division after it are left out), minus those of probeFrame (the probes' common barrier and output store), divided
  by 8. Both sides of a branch count, so this is what a unit costs to issue when every corner is inside the image;
  loop control and the MMA are not in it.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from plugins.dcnv2 import abi
from plugins.dcnv2.errors import PluginBuildError

# Per-SM limits (CUDA programming guide, "Technical Specifications per Compute Capability"): registers, shared
# memory per SM and the most one block may opt in to (bytes), resident blocks and threads.
ARCHS = {
    "sm_80": dict(regs=65536, smem=167936, smem_block=166912, blocks=32, threads=2048),
    "sm_90": dict(regs=65536, smem=233472, smem_block=232448, blocks=32, threads=2048),
}
RESERVED_SMEM = 1024  # shared memory the driver reserves per block (sm_80 and later)
THREADS = 256         # both kernels' block size
TARGET_BLOCKS = 2     # the occupancy the fast path is built for (__launch_bounds__(256, 2))
UNIT_ENTRIES = 8      # column entries per probe unit
# ADNet's layer (L1: B 1, 64 -> 64 channels, 3x3, 8 deformable groups, FP16; H and W do not change the plan).
ADNET_LAYER = dict(x=(1, 64, 64, 64), offset_mask=(1, 216, 64, 64), weight=(64, 64, 3, 3), bias_length=64)

KERNELS = {  # mangled-name fragment -> report name
    "dcnFastKernel": "v2 fast path (FP16, channels-last)",
    "dcnForwardKernelI6__half": "v1 generic FP16",
    "dcnForwardKernelIf": "v1 generic FP32",
}
FAST, GENERIC = "v2 fast path", "v1 generic FP16"
PROBES = ("probeFastSegment", "probeGenericEntry", "probeGenericTap")
FRAME = "probeFrame"


@dataclass
class KernelRow:
    kernel: str
    arch: str
    registers: int
    static_smem: int
    dynamic_smem: int
    resident_weights: bool | None
    spill_bytes: int
    blocks_per_sm: int
    occupancy: float
    sass: int
    ldg128: int
    ldg_scalar16: int
    ldg_other: int
    sts128: int
    hmma: int


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise PluginBuildError(f"{' '.join(cmd)} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def extract_cubins(cuobjdump: str, obj: Path, out: Path) -> dict[str, Path]:
    """{arch: cubin} of an object file (cuobjdump -xelf all)."""
    out.mkdir(parents=True, exist_ok=True)
    _run([cuobjdump, "-xelf", "all", str(obj.resolve())], cwd=out)
    cubins = {}
    for path in sorted(out.glob(f"{obj.stem}*.cubin")):
        match = re.search(r"sm_(\d+)", path.name)
        if match:
            cubins[f"sm_{match.group(1)}"] = path
    if not cubins:
        raise PluginBuildError(f"{obj} holds no cubin (was it compiled with -gencode ...,code=sm_XX?)")
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
    """{mangled function: [opcode with modifiers, ...]} in program order, NOPs left out."""
    functions, current = {}, None
    for line in _run([nvdisasm, "-c", str(cubin)]).splitlines():
        header = re.match(r"\s*\.text\.([\w$]+):", line)
        if header:
            current = header.group(1)
            functions[current] = []
            continue
        match = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if current and match and match.group(1) != "NOP":
            functions[current].append(match.group(1))
    return functions


def hot_path(ops: list[str]) -> list[str]:
    """The instructions up to the function's last EXIT (what follows are called slow paths and the final self-branch)."""
    exits = [i for i, op in enumerate(ops) if op == "EXIT"]
    return ops[:exits[-1] + 1] if exits else ops


def probe_name(mangled: str) -> str | None:
    """`probeFastSegment` from `_ZN5adnet3dcn16probeFastSegmentENS0_...` (Itanium names are length-prefixed)."""
    match = re.search(r"(\d+)(probe\w+)", mangled)
    return match.group(2)[:int(match.group(1))] if match else None


def occupancy(arch: str, registers: int, smem: int) -> tuple[int, float]:
    limits = ARCHS[arch]
    per_warp = -(-registers * 32 // 256) * 256  # registers are allocated per warp in units of 256
    by_regs = limits["regs"] // (per_warp * (THREADS // 32)) if registers else limits["blocks"]
    by_smem = limits["smem"] // (smem + RESERVED_SMEM) if smem <= limits["smem_block"] else 0
    blocks = min(by_regs, by_smem, limits["blocks"], limits["threads"] // THREADS)
    return blocks, blocks * THREADS / limits["threads"]


def mix(ops: list[str]) -> dict[str, int]:
    def count(pattern):
        return sum(1 for op in ops if re.fullmatch(pattern, op))
    vector, scalar16 = count(r"LDG\.E\.128(\..*)?"), count(r"LDG\.E\.(U16|S16)(\..*)?")
    return {"ldg128": vector, "ldg_scalar16": scalar16, "ldg_other": count(r"LDG(\..*)?") - vector - scalar16,
            "sts128": count(r"STS\.128(\..*)?"), "hmma": count(r"HMMA(\..*)?")}


def classes(ops: list[str]) -> dict[str, int]:
    """Opcode (without modifiers) -> count, largest first."""
    counts: dict[str, int] = {}
    for op in ops:
        counts[op.split(".")[0]] = counts.get(op.split(".")[0], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def fast_path_plan(library: Path, budget: int) -> tuple[int, bool]:
    """(dynamic shared memory bytes, weights resident) of the fast path at ADNet's layer for `budget`."""
    lib = abi.declare(ctypes.CDLL(str(library)))
    problem = abi.make_problem("float16", {}, ADNET_LAYER["x"], ADNET_LAYER["offset_mask"], ADNET_LAYER["weight"],
                               ADNET_LAYER["bias_length"], x_format="channels_last",
                               offset_mask_format="channels_last", y_format="channels_last")
    resident = ctypes.c_int32(0)
    size = lib.adnet_dcn_fast_shared_bytes(ctypes.byref(problem), budget, ctypes.byref(resident))
    if size < 0:
        raise PluginBuildError(f"the fast path's plan at ADNet's layer failed: {abi.last_error(lib)}")
    return int(size), bool(resident.value)


def report(kernels_obj: Path, probes_obj: Path, library: Path, cuobjdump: str, nvdisasm: str, work: Path) -> dict:
    rows, units = [], {}
    for arch, cubin in extract_cubins(cuobjdump, kernels_obj, work / kernels_obj.stem).items():
        if arch not in ARCHS:
            continue
        usage = resource_usage(cuobjdump, cubin)
        for mangled, ops in sass_by_function(nvdisasm, cubin).items():
            name = next((v for k, v in KERNELS.items() if k in mangled), None)
            if name is None:
                continue
            res = usage.get(mangled, {})
            static, dynamic, resident = res.get("SHARED", 0), 0, None
            if "dcnFastKernel" in mangled:
                budget = ARCHS[arch]["smem"] // TARGET_BLOCKS - RESERVED_SMEM - static
                dynamic, resident = fast_path_plan(library, budget)
            blocks, occ = occupancy(arch, res.get("REG", 0), static + dynamic)
            rows.append(KernelRow(name, arch, res.get("REG", 0), static, dynamic, resident,
                                  res.get("LOCAL", 0) + res.get("STACK", 0), blocks, occ, len(ops), **mix(ops)))
    for arch, cubin in extract_cubins(cuobjdump, probes_obj, work / probes_obj.stem).items():
        if arch not in ARCHS:
            continue
        bodies = {probe_name(m): hot_path(ops) for m, ops in sass_by_function(nvdisasm, cubin).items()
                  if probe_name(m)}
        missing = [p for p in (*PROBES, FRAME) if p not in bodies]
        if missing:
            raise PluginBuildError(f"probe kernels {missing} not found in {cubin}")
        frame = len(bodies[FRAME])
        net = {p: len(bodies[p]) - frame for p in PROBES}
        net["probeGenericTap"] -= sum(op.startswith("STS") for op in bodies["probeGenericTap"])  # keeps it alive
        generic_unit = round(net["probeGenericTap"] + UNIT_ENTRIES * net["probeGenericEntry"])
        units[arch] = {
            FAST: {"sass_per_entry": round(net["probeFastSegment"] / UNIT_ENTRIES, 1),
                   "unit_sass": net["probeFastSegment"], **mix(bodies["probeFastSegment"]),
                   "classes": classes(bodies["probeFastSegment"])},
            GENERIC: {"sass_per_entry": round(generic_unit / UNIT_ENTRIES, 1), "unit_sass": generic_unit,
                      "tap_sass": net["probeGenericTap"], "entry_sass": net["probeGenericEntry"],
                      **{k: mix(bodies["probeGenericTap"])[k] + UNIT_ENTRIES * v
                         for k, v in mix(bodies["probeGenericEntry"]).items()},
                      "classes": classes(bodies["probeGenericEntry"])},
            "frame_sass": frame,
        }
    return {"layer": ADNET_LAYER, "kernels": [asdict(r) for r in rows], "gather_unit": units,
            "notes": {"unit": f"{UNIT_ENTRIES} column entries (8 channels of one group at one tap); static SASS of "
                              "the probes' hot paths minus probeFrame's (v1: one tap + 8 entries)",
                      "dynamic_smem": "the fast path's plan at ADNet's layer for two blocks per SM"}}


def markdown(data: dict) -> str:
    lines = ["| kernel | arch | regs | smem static + dynamic (B) | weights | spills (B) | blocks/SM | occupancy | "
             "SASS | LDG.128 | scalar 16-bit LDG | other LDG | STS.128 | HMMA |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["kernels"]:
        weights = {None: "-", True: "resident", False: "streamed"}[r["resident_weights"]]
        lines.append(f"| {r['kernel']} | {r['arch']} | {r['registers']} | {r['static_smem']} + {r['dynamic_smem']} | "
                     f"{weights} | {r['spill_bytes']} | {r['blocks_per_sm']} | {r['occupancy']:.1%} | {r['sass']} | "
                     f"{r['ldg128']} | {r['ldg_scalar16']} | {r['ldg_other']} | {r['sts128']} | {r['hmma']} |")
    lines += ["", f"Gather unit ({data['notes']['unit']}):", "",
              "| arch | kernel | SASS per column entry | unit SASS | LDG.128 | scalar 16-bit LDG | STS.128 |",
              "|---|---|---|---|---|---|---|"]
    for arch, unit in data["gather_unit"].items():
        for label in (FAST, GENERIC):
            u = unit[label]
            lines.append(f"| {arch} | {label} | {u['sass_per_entry']} | {u['unit_sass']} | {u['ldg128']} | "
                         f"{u['ldg_scalar16']} | {u['sts128']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugins.dcnv2.kernel_report", description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=Path, required=True, help="dcnv2_kernel.o (make kernels)")
    parser.add_argument("--probes", type=Path, required=True, help="dcnv2_kernel_probe.o")
    parser.add_argument("--library", type=Path, required=True, help="libadnet_dcn_kernels.so (its launch planner)")
    parser.add_argument("--cuobjdump", required=True)
    parser.add_argument("--nvdisasm", required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for kernel-report.json / .md")
    args = parser.parse_args(argv)
    tools = [str(Path(t).resolve()) if "/" in t else t for t in (args.cuobjdump, args.nvdisasm)]
    try:
        data = report(args.kernels, args.probes, args.library.resolve(), *tools, args.out / "cubins")
    except (PluginBuildError, OSError) as exc:
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

"""The AdnetDCNv2 node/plugin contract, defined once.

Python (graph surgery, the ONNX Runtime custom op, the TensorRT-RTX test plugin, tests) imports this module;
C++ (kernels, CPU twin, IPluginV3 adapter) includes the header generated from it by
`python -m plugins.dcnv2.contract --header OUT` (the Makefile does this; the header is a build output).

Node: op_type AdnetDCNv2, attributes plugin_version / plugin_namespace (read by TensorRT's ONNX parser to find
the creator) plus the integer fields below. Inputs: x [B, C, H, W]; offset_mask_logits [B, 3*dg*K, Ho, Wo] in the
official chunk order (first 2*dg*K channels are the (dy, dx) offsets, last dg*K the mask logits; the plugin
applies the sigmoid); weight [Cout, C, kh, kw]; bias [Cout]. Output: y [B, Cout, Ho, Wo]. Weight groups: 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PLUGIN_NAME = "AdnetDCNv2"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "adnet"
# ONNX domain of the AdnetDCNv2 nodes. TensorRT's ONNX parser finds plugins by op_type + plugin_version +
# plugin_namespace and ignores the domain; ONNX Runtime's Python custom ops (the CPU twin in CI) live in this one.
PLUGIN_DOMAIN = "ai.onnx.contrib"

# Integer fields in serialisation order, with the defaults of ADNet's DCN_sep layers.
FIELDS: tuple[tuple[str, int], ...] = (
    ("stride", 1),
    ("padding", 1),
    ("dilation", 1),
    ("deformable_groups", 8),
)
FIELD_DEFAULTS = dict(FIELDS)
# Smallest accepted value of each field (the largest is int32's); the C++ core checks against the generated copy.
FIELD_MINIMA: dict[str, int] = {"stride": 1, "padding": 0, "dilation": 1, "deformable_groups": 1}
assert list(FIELD_MINIMA) == [name for name, _ in FIELDS]

INPUT_NAMES = ("x", "offset_mask_logits", "weight", "bias")
OUTPUT_NAMES = ("y",)
# Offsets, then mask logits: channel blocks of offset_mask_logits, in units of dg*K.
OFFSET_BLOCKS = 2
MASK_BLOCKS = 1


def header_text() -> str:
    """C/C++ header with the same contract (constants only; no TensorRT types)."""
    lines = [
        "// Generated from plugins/dcnv2/contract.py by `python -m plugins.dcnv2.contract --header`. Do not edit.",
        "#pragma once",
        "#include <cstdint>",
        "",
        "namespace adnet {",
        "namespace dcn {",
        f'constexpr char const* kPluginName = "{PLUGIN_NAME}";',
        f'constexpr char const* kPluginVersion = "{PLUGIN_VERSION}";',
        f'constexpr char const* kPluginNamespace = "{PLUGIN_NAMESPACE}";',
        f"constexpr int32_t kNumFields = {len(FIELDS)};",
        "constexpr char const* kFieldNames[kNumFields] = {" + ", ".join(f'"{n}"' for n, _ in FIELDS) + "};",
        "constexpr int32_t kFieldDefaults[kNumFields] = {" + ", ".join(str(v) for _, v in FIELDS) + "};",
        "constexpr int32_t kFieldMinima[kNumFields] = {" + ", ".join(str(v) for v in FIELD_MINIMA.values()) + "};",
    ]
    lines += [f"constexpr int32_t kField{''.join(p.title() for p in n.split('_'))} = {i};"
              for i, (n, _) in enumerate(FIELDS)]
    lines += [
        f"constexpr int32_t kNumInputs = {len(INPUT_NAMES)};",
        "constexpr char const* kInputNames[kNumInputs] = {" + ", ".join(f'"{n}"' for n in INPUT_NAMES) + "};",
        f"constexpr int32_t kNumOutputs = {len(OUTPUT_NAMES)};",
        f"constexpr int32_t kOffsetBlocks = {OFFSET_BLOCKS};",
        f"constexpr int32_t kMaskBlocks = {MASK_BLOCKS};",
        "}  // namespace dcn",
        "}  // namespace adnet",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugins.dcnv2.contract", description=__doc__.splitlines()[0])
    parser.add_argument("--header", metavar="OUT", help="write the C++ contract header to OUT ('-' for stdout)")
    args = parser.parse_args(argv)
    text = header_text()
    if args.header in (None, "-"):
        sys.stdout.write(text)
    else:
        out = Path(args.header)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists() or out.read_text() != text:  # keep the timestamp when unchanged (no rebuilds)
            out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

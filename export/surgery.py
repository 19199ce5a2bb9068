"""Graph surgery: every DeformConv, with the nodes that cut offsets and mask out of the offset-conv output, becomes
ONE AdnetDCNv2 plugin node (contract: plugins/dcnv2/contract.py, spec: plugins/dcnv2/README.md).

Pattern matched (by op type and wiring, never by tensor names), as the official DCN_sep produces it:

    logits ─► Split(axis 1, 3 equal parts) ─┬─ o1 ─┐
                  (or three Slices)         ├─ o2 ─┴─► Concat(axis 1) ─► offset ─┐
                                            └─ m ───► Sigmoid ─────────► mask  ──┴─► DeformConv(x, W, offset, B, mask)

becomes  AdnetDCNv2(x, logits, W, B)  with stride, padding, dilation, deformable_groups, plugin_version and
plugin_namespace attributes; the plugin applies the sigmoid itself. Split/Concat/Sigmoid nodes left without
consumers are removed by cleanup().

CLI: python -m export.surgery build/adnet.onnx build/adnet_dcn_plugin.onnx
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from client.errors import reports_errors
from export.errors import PipelineError
from plugins.dcnv2 import contract

__all__ = ["PLUGIN_DOMAIN", "SurgeryError", "replace_deform_convs", "surgery", "main"]

PLUGIN_DOMAIN = contract.PLUGIN_DOMAIN


class SurgeryError(PipelineError):
    """The graph does not have the DeformConv pattern this surgery replaces."""


def _producer(tensor: gs.Tensor, op: str) -> Optional[gs.Node]:
    if len(tensor.inputs) == 1 and tensor.inputs[0].op == op:
        return tensor.inputs[0]
    return None


def _const_ints(tensor: gs.Tensor) -> Optional[list[int]]:
    if isinstance(tensor, gs.Constant):
        return [int(v) for v in np.asarray(tensor.values).ravel()]
    return None


def _thirds(offset: gs.Tensor, mask: gs.Tensor, where: str) -> gs.Tensor:
    """The logits tensor whose first two thirds (channel axis) form `offset` and whose last third, through a
    Sigmoid, forms `mask`; raises SurgeryError naming what differs from the official pattern."""
    concat = _producer(offset, "Concat")
    sigmoid = _producer(mask, "Sigmoid")
    if concat is None or concat.attrs.get("axis") != 1 or len(concat.inputs) != 2:
        raise SurgeryError(f"{where}: offset is not Concat(axis=1) of two parts (official chunk/cat)")
    if sigmoid is None:
        raise SurgeryError(f"{where}: mask is not produced by a Sigmoid")
    parts = [concat.inputs[0], concat.inputs[1], sigmoid.inputs[0]]
    split = _producer(parts[0], "Split")
    if split is not None:
        same_split = all(len(p.inputs) == 1 and p.inputs[0] is split for p in parts[1:])
        if not same_split or len(split.outputs) != 3 or split.attrs.get("axis", 0) != 1 or \
                [next(i for i, o in enumerate(split.outputs) if o is p) for p in parts] != [0, 1, 2]:
            raise SurgeryError(f"{where}: offset/mask are not outputs 0,1 / 2 of one Split(axis=1) into 3")
        sizes = _const_ints(split.inputs[1]) if len(split.inputs) > 1 else None
        if sizes is not None and len(set(sizes)) != 1:
            raise SurgeryError(f"{where}: Split sizes {sizes} are not three equal chunks")
        return split.inputs[0]
    slices = [_producer(p, "Slice") for p in parts]
    if any(s is None for s in slices) or len({id(s.inputs[0]) for s in slices}) != 1:
        raise SurgeryError(f"{where}: offset/mask do not come from one Split or three Slices of one tensor")
    starts = [(_const_ints(s.inputs[1]) or [None])[0] for s in slices]
    axes = [(_const_ints(s.inputs[3]) if len(s.inputs) > 3 else [0]) for s in slices]
    if axes != [[1]] * 3 or None in starts or not (starts[0] == 0 < starts[1] < starts[2]):
        raise SurgeryError(f"{where}: the three Slices are not consecutive channel chunks (starts {starts})")
    return slices[0].inputs[0]


def _symmetric(values, name: str, where: str) -> int:
    values = list(values)
    if len(set(values)) != 1:
        raise SurgeryError(f"{where}: AdnetDCNv2 needs equal {name} on both axes, got {values}")
    return int(values[0])


def _plugin_node(node: gs.Node, index: int) -> gs.Node:
    where = f"DeformConv #{index} ({node.name or 'unnamed'})"
    if len(node.inputs) < 5 or node.inputs[4].name == "":
        raise SurgeryError(f"{where}: has no mask input; AdnetDCNv2 implements modulated DCN (DCNv2) only")
    x, weight, offset, bias, mask = node.inputs[:5]
    if node.attrs.get("group", 1) != 1:
        raise SurgeryError(f"{where}: group={node.attrs['group']}; AdnetDCNv2 supports group=1 only")
    logits = _thirds(offset, mask, where)
    kh, kw = (weight.shape[2], weight.shape[3]) if weight.shape else (None, None)
    # DeformConv attributes (with ONNX's defaults) -> the contract's fields, in the contract's order.
    from_onnx = {
        "stride": lambda: _symmetric(node.attrs.get("strides", [1, 1]), "strides", where),
        "padding": lambda: _symmetric(node.attrs.get("pads", [0, 0, 0, 0]), "pads", where),
        "dilation": lambda: _symmetric(node.attrs.get("dilations", [1, 1]), "dilations", where),
        "deformable_groups": lambda: int(node.attrs.get("offset_group", 1)),
    }
    attrs = {"plugin_version": contract.PLUGIN_VERSION, "plugin_namespace": contract.PLUGIN_NAMESPACE}
    attrs.update((name, from_onnx[name]()) for name, _ in contract.FIELDS)
    if kh is not None and kh != kw:
        raise SurgeryError(f"{where}: kernel {kh}x{kw}; AdnetDCNv2 expects a square kernel")
    if bias.name == "":
        c_out = weight.shape[0]
        bias = gs.Constant(f"{node.name}_zero_bias", np.zeros(c_out, dtype=np.asarray(weight.values).dtype))
    out = node.outputs[0]
    out.dtype = x.dtype
    if logits.shape:
        out.shape = [logits.shape[0], weight.shape[0], logits.shape[2], logits.shape[3]]
    return gs.Node(op=contract.PLUGIN_NAME, name=f"{contract.PLUGIN_NAME}_{index}", domain=PLUGIN_DOMAIN,
                   attrs=attrs, inputs=[x, logits, weight, bias], outputs=[out])


def replace_deform_convs(graph: gs.Graph) -> int:
    """Replace every DeformConv pattern in `graph` (in place); returns how many were replaced."""
    deform = [n for n in graph.nodes if n.op == "DeformConv"]
    if not deform:
        raise SurgeryError("no DeformConv node in the graph: export it with `python -m export.to_onnx` "
                           "(standard ONNX, one DeformConv per DCN call) before the surgery")
    for index, node in enumerate(deform):
        plugin = _plugin_node(node, index)
        node.outputs.clear()
        graph.nodes.append(plugin)
    graph.cleanup().toposort()
    return len(deform)


def surgery(src: str | Path, dst: str | Path) -> int:
    """Read `src`, replace its DeformConvs by AdnetDCNv2 nodes, infer shapes, write `dst`; returns the count."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise SurgeryError(f"{src}: no such ONNX file; create it with `python -m export.to_onnx --out {src}`")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # protobuf raises several types on a foreign file
        raise SurgeryError(f"{src}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
    count = replace_deform_convs(graph)
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    if not any(o.domain == PLUGIN_DOMAIN for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    out.metadata_props.add(key="adnet.surgery", value=f"{count} DeformConv -> {contract.PLUGIN_NAME}")
    out = onnx.shape_inference.infer_shapes(out)
    onnx.checker.check_model(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, str(dst))
    return count


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.surgery", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="ONNX from export.to_onnx (standard DeformConv nodes)")
    parser.add_argument("dst", help="output ONNX with AdnetDCNv2 plugin nodes")
    args = parser.parse_args(argv)
    count = surgery(args.src, args.dst)
    print(f"wrote {args.dst}: {count} DeformConv -> {contract.PLUGIN_NAME} "
          f"(version {contract.PLUGIN_VERSION}, namespace {contract.PLUGIN_NAMESPACE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

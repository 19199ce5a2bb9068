"""Independent references for the tests; they share no code with export/.

- `dcn_naive`: DCNv2 with plain Python loops over every output, tap and bilinear corner, in float64 (numpy).
- `dcn_grid_sample`: DCNv2 built from F.grid_sample (zero padding, align_corners=True), a different algorithm
  from export/dcn.py's gather + matmul; fast enough for whole-network references.
- `adnet_reference`: the official ADNet forward written functionally from a state dict, using the official
  parameter names, with DCN from `dcn_grid_sample`.
- `rel_l2`: the relative L2 error every comparison in the suite uses.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def rel_l2(a, b) -> float:
    """||a - b|| / ||b|| in float64 (numpy arrays or CPU tensors)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def dcn_naive(x, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):
    """DCNv2 by definition: every output = bias + sum over channels and taps of w * m * bilinear(x, p)."""
    x, offset, weight = (np.asarray(a, dtype=np.float64) for a in (x, offset, weight))
    mask = None if mask is None else np.asarray(mask, dtype=np.float64)
    bsz, c, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    k = kh * kw
    dg = offset.shape[1] // (2 * k)
    groups = c // c_per_group
    ho, wo = offset.shape[2:]
    out = np.zeros((bsz, c_out, ho, wo))

    def bilinear(b, ch, y, xx):
        if not (-1 < y < h and -1 < xx < w):
            return 0.0
        y0, x0 = math.floor(y), math.floor(xx)
        total = 0.0
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xq, wx in ((x0, 1 - (xx - x0)), (x0 + 1, xx - x0)):
                if 0 <= yy < h and 0 <= xq < w:
                    total += wy * wx * x[b, ch, yy, xq]
        return total

    for b in range(bsz):
        for co in range(c_out):
            g = co // (c_out // groups)
            for oy in range(ho):
                for ox in range(wo):
                    acc = 0.0 if bias is None else float(bias[co])
                    for ci in range(c_per_group):
                        ch = g * c_per_group + ci
                        og = ch // (c // dg)
                        for i in range(kh):
                            for j in range(kw):
                                tap = i * kw + j
                                dy = offset[b, og * 2 * k + 2 * tap, oy, ox]
                                dx = offset[b, og * 2 * k + 2 * tap + 1, oy, ox]
                                m = 1.0 if mask is None else mask[b, og * k + tap, oy, ox]
                                y = oy * stride - padding + i * dilation + dy
                                xx = ox * stride - padding + j * dilation + dx
                                acc += weight[co, ci, i, j] * m * bilinear(b, ch, y, xx)
                    out[b, co, oy, ox] = acc
    return out


def dcn_grid_sample(x, offset, mask, weight, bias, stride=1, padding=1, dilation=1):
    """DCNv2 (weight groups = 1) from grid_sample: sample each offset group at each tap, then contract."""
    bsz, c, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    k = kh * kw
    dg = offset.shape[1] // (2 * k)
    ho, wo = offset.shape[2:]
    oy = torch.arange(ho, dtype=x.dtype) * stride - padding
    ox = torch.arange(wo, dtype=x.dtype) * stride - padding
    taps = []
    for i in range(kh):
        for j in range(kw):
            tap = i * kw + j
            per_group = []
            for g in range(dg):
                py = oy[:, None] + i * dilation + offset[:, g * 2 * k + 2 * tap]
                px = ox[None, :] + j * dilation + offset[:, g * 2 * k + 2 * tap + 1]
                grid = torch.stack((px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1), dim=-1)
                xs = x[:, g * (c // dg):(g + 1) * (c // dg)]
                sampled = F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
                per_group.append(sampled * mask[:, g * k + tap].unsqueeze(1))
            taps.append(torch.cat(per_group, dim=1))
    cols = torch.stack(taps, dim=2)  # [B, C, K, Ho, Wo]
    out = torch.einsum("bckhw,ock->bohw", cols, weight.reshape(c_out, c, k))
    return out + bias.view(1, -1, 1, 1)


def adnet_reference(sd, x1, x2, x3, offsets_seen=None):
    """Official ADNet forward from a state dict (official names). Appends |offset| means to offsets_seen."""

    def conv(x, name, stride=1, dilation=1):
        wgt = sd[name + ".weight"]
        pad = dilation * (wgt.shape[-1] // 2)
        return F.conv2d(x, wgt, sd[name + ".bias"], stride=stride, padding=pad, dilation=dilation)

    def lrelu(x, slope=0.1):
        return torch.where(x >= 0, x, x * slope)

    def up(x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def pyramid(x):
        p = "pyramid_feats."
        l1 = lrelu(conv(x, p + "conv1.0"))
        l1 = l1 + conv(torch.relu(conv(l1, p + "feature_extraction.0.conv1")), p + "feature_extraction.0.conv2")
        l2 = lrelu(conv(lrelu(conv(l1, p + "downsample1.0", stride=2)), p + "downsample1.2"))
        l3 = lrelu(conv(lrelu(conv(l2, p + "downsample2.0", stride=2)), p + "downsample2.2"))
        return l1, l2, l3

    def dcn(name, inp, fea):
        out = conv(fea, name + ".conv_offset_mask")
        n = out.shape[1] // 3
        offset, mask = out[:, :2 * n], torch.sigmoid(out[:, 2 * n:])
        if offsets_seen is not None:
            offsets_seen.append(float(offset.abs().mean()))
        return dcn_grid_sample(inp, offset, mask, sd[name + ".weight"], sd[name + ".bias"])

    def pcd(nbr, ref):
        a = "align_module."
        o3 = lrelu(conv(torch.cat([nbr[2], ref[2]], 1), a + "L3_offset_conv1"))
        o3 = lrelu(conv(o3, a + "L3_offset_conv2"))
        f3 = lrelu(dcn(a + "L3_dcnpack", nbr[2], o3))
        o2 = lrelu(conv(torch.cat([nbr[1], ref[1]], 1), a + "L2_offset_conv1"))
        o2 = lrelu(conv(torch.cat([o2, up(o3) * 2], 1), a + "L2_offset_conv2"))
        o2 = lrelu(conv(o2, a + "L2_offset_conv3"))
        f2 = dcn(a + "L2_dcnpack", nbr[1], o2)
        f2 = lrelu(conv(torch.cat([f2, up(f3)], 1), a + "L2_fea_conv"))
        o1 = lrelu(conv(torch.cat([nbr[0], ref[0]], 1), a + "L1_offset_conv1"))
        o1 = lrelu(conv(torch.cat([o1, up(o2) * 2], 1), a + "L1_offset_conv2"))
        o1 = lrelu(conv(o1, a + "L1_offset_conv3"))
        f1 = dcn(a + "L1_dcnpack", nbr[0], o1)
        f1 = conv(torch.cat([f1, up(f2)], 1), a + "L1_fea_conv")
        oc = lrelu(conv(torch.cat([f1, ref[0]], 1), a + "cas_offset_conv1"))
        oc = lrelu(conv(oc, a + "cas_offset_conv2"))
        return lrelu(dcn(a + "cas_dcnpack", f1, oc))

    def attention(name, a, b):
        hidden = lrelu(conv(torch.cat((a, b), 1), name + ".att1"), 0.01)
        return torch.sigmoid(conv(hidden, name + ".att2"))

    def drdb(name, x):
        feats = x
        for i in range(5):
            feats = torch.cat((feats, torch.relu(conv(feats, f"{name}.dense_layers.{i}.conv", dilation=2))), 1)
        return conv(feats, name + ".conv_1x1") + x

    p1, p2, p3 = pyramid(x1[:, 3:]), pyramid(x2[:, 3:]), pyramid(x3[:, 3:])
    a1, a3 = pcd(p1, p2), pcd(p3, p2)
    t1, t2, t3 = (torch.relu(conv(x[:, :3], "feat_exract.0")) for x in (x1, x2, x3))
    t1 = t1 * attention("att_module_l", t1, t2)
    t3 = t3 * attention("att_module_h", t3, t2)
    f0 = conv(torch.cat((a1, t1, p2[0], t2, a3, t3), 1), "conv1")
    r1 = drdb("RDB1", f0)
    r2 = drdb("RDB2", r1)
    r3 = drdb("RDB3", r2)
    ff = conv(conv(torch.cat((r1, r2, r3), 1), "conv2.0"), "conv2.1") + p2[0]
    return torch.relu(conv(lrelu(conv(ff, "post_conv.0"), 0.01), "post_conv.2"))

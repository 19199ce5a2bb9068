"""ADNet (Liu et al., CVPRW 2021) exactly as the official implementation (liuzhen03/ADNet).

Module and parameter names reproduce the official state_dict (110 tensors, 2,956,483 parameters), so official
training checkpoints load with strict=True (see export/checkpoint.py). The forward pass is the official one,
with two deliberate differences that change no output:
- no in-place activations (they only save memory in training and get in the way of export);
- DCN_sep's "offset mean > 100" print is dropped (a data-dependent branch that cannot be exported).

Inputs: three frames [B, 6, H, W] (short, medium = reference, long); channels 0:3 are the LDR image in [0, 1],
channels 3:6 its exposure-aligned version (client/hdr_math.py: ntire_frames). Output: HDR [B, 3, H, W] in the
gamma (2.24) domain, unbounded above.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export.dcn import DCNPack

__all__ = ["ADNet", "PCDAlign", "SIZE_MULTIPLE"]

# Two stride-2 pyramid levels, whose upsampled features are concatenated with the finer ones.
SIZE_MULTIPLE = 4


def _lrelu(x: Tensor, slope: float = 0.1) -> Tensor:
    return F.leaky_relu(x, negative_slope=slope)


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class ResidualBlockNoBN(nn.Module):
    def __init__(self, num_feat: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class Pyramid(nn.Module):
    """Three-level features of the exposure-aligned half (channels 3:6), shared by the three frames."""

    def __init__(self, in_channels: int = 3, n_feats: int = 64):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, n_feats, 1, 1), nn.LeakyReLU(0.1))
        self.feature_extraction = nn.Sequential(ResidualBlockNoBN(n_feats))
        self.downsample1 = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, 2, 1), nn.LeakyReLU(0.1),
                                         nn.Conv2d(n_feats, n_feats, 3, 1, 1), nn.LeakyReLU(0.1))
        self.downsample2 = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, 2, 1), nn.LeakyReLU(0.1),
                                         nn.Conv2d(n_feats, n_feats, 3, 1, 1), nn.LeakyReLU(0.1))

    def forward(self, x: Tensor) -> list[Tensor]:
        l1 = self.feature_extraction(self.conv1(x))
        l2 = self.downsample1(l1)
        l3 = self.downsample2(l2)
        return [l1, l2, l3]


class PCDAlign(nn.Module):
    """Pyramid, cascading and deformable alignment (EDVR's PCD) with 3 levels; official PCD_Align."""

    def __init__(self, nf: int = 64, groups: int = 8):
        super().__init__()

        def conv(cin: int) -> nn.Conv2d:
            return nn.Conv2d(cin, nf, 3, 1, 1)

        def dcn() -> DCNPack:
            return DCNPack(nf, nf, 3, stride=1, padding=1, dilation=1, deformable_groups=groups)

        self.L3_offset_conv1 = conv(nf * 2)
        self.L3_offset_conv2 = conv(nf)
        self.L3_dcnpack = dcn()
        self.L2_offset_conv1 = conv(nf * 2)
        self.L2_offset_conv2 = conv(nf * 2)
        self.L2_offset_conv3 = conv(nf)
        self.L2_dcnpack = dcn()
        self.L2_fea_conv = conv(nf * 2)
        self.L1_offset_conv1 = conv(nf * 2)
        self.L1_offset_conv2 = conv(nf * 2)
        self.L1_offset_conv3 = conv(nf)
        self.L1_dcnpack = dcn()
        self.L1_fea_conv = conv(nf * 2)
        self.cas_offset_conv1 = conv(nf * 2)
        self.cas_offset_conv2 = conv(nf)
        self.cas_dcnpack = dcn()

    def forward(self, nbr: list[Tensor], ref: list[Tensor]) -> Tensor:
        # L3 (1/4 resolution)
        l3_off = _lrelu(self.L3_offset_conv1(torch.cat([nbr[2], ref[2]], dim=1)))
        l3_off = _lrelu(self.L3_offset_conv2(l3_off))
        l3_fea = _lrelu(self.L3_dcnpack(nbr[2], l3_off))
        # L2 (1/2 resolution); upsampled offsets are doubled with the resolution
        l2_off = _lrelu(self.L2_offset_conv1(torch.cat([nbr[1], ref[1]], dim=1)))
        l2_off = _lrelu(self.L2_offset_conv2(torch.cat([l2_off, _up2(l3_off) * 2], dim=1)))
        l2_off = _lrelu(self.L2_offset_conv3(l2_off))
        l2_fea = self.L2_dcnpack(nbr[1], l2_off)
        l2_fea = _lrelu(self.L2_fea_conv(torch.cat([l2_fea, _up2(l3_fea)], dim=1)))
        # L1 (full resolution)
        l1_off = _lrelu(self.L1_offset_conv1(torch.cat([nbr[0], ref[0]], dim=1)))
        l1_off = _lrelu(self.L1_offset_conv2(torch.cat([l1_off, _up2(l2_off) * 2], dim=1)))
        l1_off = _lrelu(self.L1_offset_conv3(l1_off))
        l1_fea = self.L1_dcnpack(nbr[0], l1_off)
        l1_fea = self.L1_fea_conv(torch.cat([l1_fea, _up2(l2_fea)], dim=1))
        # Cascading refinement
        off = _lrelu(self.cas_offset_conv1(torch.cat([l1_fea, ref[0]], dim=1)))
        off = _lrelu(self.cas_offset_conv2(off))
        return _lrelu(self.cas_dcnpack(l1_fea, off))


class SpatialAttentionModule(nn.Module):
    def __init__(self, n_feats: int):
        super().__init__()
        self.att1 = nn.Conv2d(n_feats * 2, n_feats * 2, 3, padding=1)
        self.att2 = nn.Conv2d(n_feats * 2, n_feats, 3, padding=1)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.sigmoid(self.att2(_lrelu(self.att1(torch.cat((x1, x2), 1)), 0.01)))


class DilatedDenseLayer(nn.Module):
    """Official make_dilation_dense: 3x3 conv, dilation 2, ReLU, concatenated to its input."""

    def __init__(self, n_channels: int, growth_rate: int):
        super().__init__()
        self.conv = nn.Conv2d(n_channels, growth_rate, 3, padding=2, dilation=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((x, F.relu(self.conv(x))), 1)


class DRDB(nn.Module):
    """Dilated residual dense block."""

    def __init__(self, n_channels: int, n_dense_layers: int, growth_rate: int):
        super().__init__()
        layers = []
        channels = n_channels
        for _ in range(n_dense_layers):
            layers.append(DilatedDenseLayer(channels, growth_rate))
            channels += growth_rate
        self.dense_layers = nn.Sequential(*layers)
        self.conv_1x1 = nn.Conv2d(channels, n_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_1x1(self.dense_layers(x)) + x


class ADNet(nn.Module):
    """Attention-guided deformable network; defaults are the paper's configuration ADNet(6, 5, 64, 32).

    `align_version` is accepted for signature compatibility with the official class (it is unused there too).
    """

    def __init__(self, nChannel: int = 6, nDenselayer: int = 5, nFeat: int = 64, growthRate: int = 32,
                 align_version: str = "v0"):
        super().__init__()
        if nChannel != 6:
            raise ValueError(f"ADNet takes 6-channel frames (3 LDR + 3 exposure-aligned); nChannel={nChannel}")
        self.n_channel = nChannel
        self.n_denselayer = nDenselayer
        self.n_feats = nFeat
        self.growth_rate = growthRate
        self.align_version = align_version

        self.pyramid_feats = Pyramid(3, nFeat)
        self.align_module = PCDAlign(nf=nFeat, groups=8)
        self.att_module_l = SpatialAttentionModule(nFeat)
        self.att_module_h = SpatialAttentionModule(nFeat)
        self.feat_exract = nn.Sequential(nn.Conv2d(3, nFeat, 3, padding=1), nn.ReLU())
        self.conv1 = nn.Conv2d(nFeat * 6, nFeat, 3, padding=1)
        self.RDB1 = DRDB(nFeat, nDenselayer, growthRate)
        self.RDB2 = DRDB(nFeat, nDenselayer, growthRate)
        self.RDB3 = DRDB(nFeat, nDenselayer, growthRate)
        self.conv2 = nn.Sequential(nn.Conv2d(nFeat * 3, nFeat, 1), nn.Conv2d(nFeat, nFeat, 3, padding=1))
        self.post_conv = nn.Sequential(nn.Conv2d(nFeat, nFeat, 3, padding=1), nn.LeakyReLU(0.01),
                                       nn.Conv2d(nFeat, 3, 3, padding=1), nn.ReLU())

    @staticmethod
    def check_inputs(x1: Tensor, x2: Tensor, x3: Tensor) -> None:
        """Clear errors for inputs the network cannot take (skipped for symbolic shapes during export)."""
        for name, x in (("x1", x1), ("x2", x2), ("x3", x3)):
            if x.dim() != 4 or x.shape[1] != 6:
                raise ValueError(f"ADNet: {name} must be [B, 6, H, W] (3 LDR + 3 exposure-aligned channels), "
                                 f"got {tuple(x.shape)}")
        if not (x1.shape == x2.shape == x3.shape):
            raise ValueError(f"ADNet: the three frames differ in shape: {tuple(x1.shape)}, {tuple(x2.shape)}, "
                             f"{tuple(x3.shape)}")
        h, w = x1.shape[-2:]
        if isinstance(h, int) and isinstance(w, int) and (h % SIZE_MULTIPLE or w % SIZE_MULTIPLE):
            ph, pw = -h % SIZE_MULTIPLE, -w % SIZE_MULTIPLE
            raise ValueError(f"ADNet: H and W must be multiples of {SIZE_MULTIPLE} (two stride-2 pyramid levels), "
                             f"got {h}x{w}; pad by {ph} rows and {pw} columns (the exported pipeline graph pads "
                             f"and crops for you)")

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> Tensor:
        self.check_inputs(x1, x2, x3)
        x1_t, x1_l = x1[:, 0:3], x1[:, 3:]
        x2_t, x2_l = x2[:, 0:3], x2[:, 3:]
        x3_t, x3_l = x3[:, 0:3], x3[:, 3:]
        # Pyramid features of the exposure-aligned halves, aligned to the reference (medium) frame.
        f1_l = self.pyramid_feats(x1_l)
        f2_l = self.pyramid_feats(x2_l)
        f3_l = self.pyramid_feats(x3_l)
        f2_ = f2_l[0]
        f1_aligned = self.align_module(f1_l, f2_l)
        f3_aligned = self.align_module(f3_l, f2_l)
        # Spatial attention on the LDR halves.
        f1_t = self.feat_exract(x1_t)
        f2_t = self.feat_exract(x2_t)
        f3_t = self.feat_exract(x3_t)
        f1_t_ = f1_t * self.att_module_l(f1_t, f2_t)
        f3_t_ = f3_t * self.att_module_h(f3_t, f2_t)
        # Merging network.
        f0 = self.conv1(torch.cat((f1_aligned, f1_t_, f2_, f2_t, f3_aligned, f3_t_), 1))
        r1 = self.RDB1(f0)
        r2 = self.RDB2(r1)
        r3 = self.RDB3(r2)
        ff = self.conv2(torch.cat((r1, r2, r3), 1)) + f2_
        return self.post_conv(ff)

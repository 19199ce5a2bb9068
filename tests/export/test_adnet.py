"""ADNet: the official key/shape contract, parameter count, input checks, and float32 vs an independent
float64 reference of the official architecture with non-zero offsets."""
import numpy as np
import pytest
import torch

from export.adnet import ADNet
from tests.factories import random_official_state_dict, random_frames
from tests.reference import adnet_reference, rel_l2

# The official state_dict of ADNet(6, 5, 64, 32) (liuzhen03/ADNet graphs/adnet.py + DCNv2/dcn_v2.py), in
# registration order. This table is the contract that lets official checkpoints load with strict=True.
OFFICIAL_STATE_DICT = [
    ("pyramid_feats.conv1.0.weight", (64, 3, 1, 1)),
    ("pyramid_feats.conv1.0.bias", (64,)),
    ("pyramid_feats.feature_extraction.0.conv1.weight", (64, 64, 3, 3)),
    ("pyramid_feats.feature_extraction.0.conv1.bias", (64,)),
    ("pyramid_feats.feature_extraction.0.conv2.weight", (64, 64, 3, 3)),
    ("pyramid_feats.feature_extraction.0.conv2.bias", (64,)),
    ("pyramid_feats.downsample1.0.weight", (64, 64, 3, 3)),
    ("pyramid_feats.downsample1.0.bias", (64,)),
    ("pyramid_feats.downsample1.2.weight", (64, 64, 3, 3)),
    ("pyramid_feats.downsample1.2.bias", (64,)),
    ("pyramid_feats.downsample2.0.weight", (64, 64, 3, 3)),
    ("pyramid_feats.downsample2.0.bias", (64,)),
    ("pyramid_feats.downsample2.2.weight", (64, 64, 3, 3)),
    ("pyramid_feats.downsample2.2.bias", (64,)),
    ("align_module.L3_offset_conv1.weight", (64, 128, 3, 3)),
    ("align_module.L3_offset_conv1.bias", (64,)),
    ("align_module.L3_offset_conv2.weight", (64, 64, 3, 3)),
    ("align_module.L3_offset_conv2.bias", (64,)),
    ("align_module.L3_dcnpack.weight", (64, 64, 3, 3)),
    ("align_module.L3_dcnpack.bias", (64,)),
    ("align_module.L3_dcnpack.conv_offset_mask.weight", (216, 64, 3, 3)),
    ("align_module.L3_dcnpack.conv_offset_mask.bias", (216,)),
    ("align_module.L2_offset_conv1.weight", (64, 128, 3, 3)),
    ("align_module.L2_offset_conv1.bias", (64,)),
    ("align_module.L2_offset_conv2.weight", (64, 128, 3, 3)),
    ("align_module.L2_offset_conv2.bias", (64,)),
    ("align_module.L2_offset_conv3.weight", (64, 64, 3, 3)),
    ("align_module.L2_offset_conv3.bias", (64,)),
    ("align_module.L2_dcnpack.weight", (64, 64, 3, 3)),
    ("align_module.L2_dcnpack.bias", (64,)),
    ("align_module.L2_dcnpack.conv_offset_mask.weight", (216, 64, 3, 3)),
    ("align_module.L2_dcnpack.conv_offset_mask.bias", (216,)),
    ("align_module.L2_fea_conv.weight", (64, 128, 3, 3)),
    ("align_module.L2_fea_conv.bias", (64,)),
    ("align_module.L1_offset_conv1.weight", (64, 128, 3, 3)),
    ("align_module.L1_offset_conv1.bias", (64,)),
    ("align_module.L1_offset_conv2.weight", (64, 128, 3, 3)),
    ("align_module.L1_offset_conv2.bias", (64,)),
    ("align_module.L1_offset_conv3.weight", (64, 64, 3, 3)),
    ("align_module.L1_offset_conv3.bias", (64,)),
    ("align_module.L1_dcnpack.weight", (64, 64, 3, 3)),
    ("align_module.L1_dcnpack.bias", (64,)),
    ("align_module.L1_dcnpack.conv_offset_mask.weight", (216, 64, 3, 3)),
    ("align_module.L1_dcnpack.conv_offset_mask.bias", (216,)),
    ("align_module.L1_fea_conv.weight", (64, 128, 3, 3)),
    ("align_module.L1_fea_conv.bias", (64,)),
    ("align_module.cas_offset_conv1.weight", (64, 128, 3, 3)),
    ("align_module.cas_offset_conv1.bias", (64,)),
    ("align_module.cas_offset_conv2.weight", (64, 64, 3, 3)),
    ("align_module.cas_offset_conv2.bias", (64,)),
    ("align_module.cas_dcnpack.weight", (64, 64, 3, 3)),
    ("align_module.cas_dcnpack.bias", (64,)),
    ("align_module.cas_dcnpack.conv_offset_mask.weight", (216, 64, 3, 3)),
    ("align_module.cas_dcnpack.conv_offset_mask.bias", (216,)),
    ("att_module_l.att1.weight", (128, 128, 3, 3)),
    ("att_module_l.att1.bias", (128,)),
    ("att_module_l.att2.weight", (64, 128, 3, 3)),
    ("att_module_l.att2.bias", (64,)),
    ("att_module_h.att1.weight", (128, 128, 3, 3)),
    ("att_module_h.att1.bias", (128,)),
    ("att_module_h.att2.weight", (64, 128, 3, 3)),
    ("att_module_h.att2.bias", (64,)),
    ("feat_exract.0.weight", (64, 3, 3, 3)),
    ("feat_exract.0.bias", (64,)),
    ("conv1.weight", (64, 384, 3, 3)),
    ("conv1.bias", (64,)),
    ("RDB1.dense_layers.0.conv.weight", (32, 64, 3, 3)),
    ("RDB1.dense_layers.0.conv.bias", (32,)),
    ("RDB1.dense_layers.1.conv.weight", (32, 96, 3, 3)),
    ("RDB1.dense_layers.1.conv.bias", (32,)),
    ("RDB1.dense_layers.2.conv.weight", (32, 128, 3, 3)),
    ("RDB1.dense_layers.2.conv.bias", (32,)),
    ("RDB1.dense_layers.3.conv.weight", (32, 160, 3, 3)),
    ("RDB1.dense_layers.3.conv.bias", (32,)),
    ("RDB1.dense_layers.4.conv.weight", (32, 192, 3, 3)),
    ("RDB1.dense_layers.4.conv.bias", (32,)),
    ("RDB1.conv_1x1.weight", (64, 224, 1, 1)),
    ("RDB1.conv_1x1.bias", (64,)),
    ("RDB2.dense_layers.0.conv.weight", (32, 64, 3, 3)),
    ("RDB2.dense_layers.0.conv.bias", (32,)),
    ("RDB2.dense_layers.1.conv.weight", (32, 96, 3, 3)),
    ("RDB2.dense_layers.1.conv.bias", (32,)),
    ("RDB2.dense_layers.2.conv.weight", (32, 128, 3, 3)),
    ("RDB2.dense_layers.2.conv.bias", (32,)),
    ("RDB2.dense_layers.3.conv.weight", (32, 160, 3, 3)),
    ("RDB2.dense_layers.3.conv.bias", (32,)),
    ("RDB2.dense_layers.4.conv.weight", (32, 192, 3, 3)),
    ("RDB2.dense_layers.4.conv.bias", (32,)),
    ("RDB2.conv_1x1.weight", (64, 224, 1, 1)),
    ("RDB2.conv_1x1.bias", (64,)),
    ("RDB3.dense_layers.0.conv.weight", (32, 64, 3, 3)),
    ("RDB3.dense_layers.0.conv.bias", (32,)),
    ("RDB3.dense_layers.1.conv.weight", (32, 96, 3, 3)),
    ("RDB3.dense_layers.1.conv.bias", (32,)),
    ("RDB3.dense_layers.2.conv.weight", (32, 128, 3, 3)),
    ("RDB3.dense_layers.2.conv.bias", (32,)),
    ("RDB3.dense_layers.3.conv.weight", (32, 160, 3, 3)),
    ("RDB3.dense_layers.3.conv.bias", (32,)),
    ("RDB3.dense_layers.4.conv.weight", (32, 192, 3, 3)),
    ("RDB3.dense_layers.4.conv.bias", (32,)),
    ("RDB3.conv_1x1.weight", (64, 224, 1, 1)),
    ("RDB3.conv_1x1.bias", (64,)),
    ("conv2.0.weight", (64, 192, 1, 1)),
    ("conv2.0.bias", (64,)),
    ("conv2.1.weight", (64, 64, 3, 3)),
    ("conv2.1.bias", (64,)),
    ("post_conv.0.weight", (64, 64, 3, 3)),
    ("post_conv.0.bias", (64,)),
    ("post_conv.2.weight", (3, 64, 3, 3)),
    ("post_conv.2.bias", (3,)),
]
OFFICIAL_PARAMETERS = 2_956_483


def test_state_dict_matches_the_official_table():
    sd = ADNet().state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == OFFICIAL_STATE_DICT
    assert len(OFFICIAL_STATE_DICT) == 110


def test_parameter_count():
    assert sum(p.numel() for p in ADNet().parameters()) == OFFICIAL_PARAMETERS
    assert sum(int(np.prod(shape)) for _, shape in OFFICIAL_STATE_DICT) == OFFICIAL_PARAMETERS


def test_official_initialisation_starts_with_zero_offsets():
    model = ADNet()
    for name in ("L3", "L2", "L1", "cas"):
        dcn = getattr(model.align_module, f"{name}_dcnpack")
        assert torch.count_nonzero(dcn.conv_offset_mask.weight) == 0
        assert torch.count_nonzero(dcn.bias) == 0
        bound = 1 / np.sqrt(64 * 9)
        assert dcn.weight.abs().max() <= bound and dcn.weight.std() > bound / 4


@pytest.mark.parametrize("h,w", [(30, 48), (32, 46), (33, 33)])
def test_sizes_not_multiple_of_4_are_refused(h, w):
    x = torch.rand(1, 6, h, w)
    with pytest.raises(ValueError, match="multiples of 4"):
        ADNet()(x, x, x)


def test_wrong_channels_and_mismatched_frames_are_refused():
    model = ADNet()
    with pytest.raises(ValueError, match=r"\[B, 6, H, W\]"):
        model(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        model(torch.rand(1, 6, 8, 8), torch.rand(1, 6, 8, 12), torch.rand(1, 6, 8, 8))
    with pytest.raises(ValueError, match="nChannel"):
        ADNet(nChannel=3)


@pytest.mark.parametrize("batch,h,w", [(1, 32, 48), (2, 24, 36)])
def test_float32_matches_float64_reference_with_nonzero_offsets(batch, h, w):
    sd = random_official_state_dict()
    frames = [random_frames(batch, h, w) for _ in range(3)]
    offsets = []
    with torch.no_grad():
        ref = adnet_reference(sd, *frames, offsets_seen=offsets)
        model = ADNet()
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        out32 = model.eval()(*(f.float() for f in frames))
        model64 = ADNet().double()
        model64.load_state_dict(sd, strict=True)
        out64 = model64.eval()(*frames)
    # The offsets really deform: 8 DCN calls, mean |offset| of pixels, not of hundredths.
    assert len(offsets) == 8 and min(offsets) > 0.5, offsets
    assert ref.abs().max() > 0.1 and (ref > 0).float().mean() > 0.02  # not all zero after the final ReLU
    assert out32.dtype == torch.float32 and out32.shape == (batch, 3, h, w)
    assert rel_l2(out64, ref) < 1e-10  # same architecture, bit for bit up to rounding
    assert rel_l2(out32, ref) <= 1e-4

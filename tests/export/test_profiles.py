"""Optimisation profiles (export/profiles.py): defaults, parsing, the contract's input layout."""
import pytest

from client import contract as io_contract
from export.profiles import DEFAULT_PROFILE, NTIRE_FRAME, Profile, ProfileError, Shape


def test_profile_defaults_and_parsing():
    assert DEFAULT_PROFILE.opt == Shape(1, *NTIRE_FRAME) == Shape.parse("1060x1900")
    assert DEFAULT_PROFILE.min.batch == 1 and DEFAULT_PROFILE.max.batch >= 2
    assert str(Profile.parse(opt_size="2x1200x2000")) == "min 1x8x8, opt 2x1200x2000, max 2x1200x2000"
    shapes = Profile.parse("1x16x16", "1x64x64", "4x128x256").input_shapes()
    assert shapes == {io_contract.INPUT_LDR: ((1, 3, 16, 16, 3), (1, 3, 64, 64, 3), (4, 3, 128, 256, 3)),
                      io_contract.INPUT_EV: ((1, 3), (1, 3), (4, 3))}
    for bad in ("1060", "0x10x10", "ax2x3", "1x2x3x4"):
        with pytest.raises(ProfileError, match="profile size"):
            Shape.parse(bad)
    with pytest.raises(ProfileError, match="min <= opt <= max"):
        Profile.parse("2x64x64", "1x64x64", "2x64x64")

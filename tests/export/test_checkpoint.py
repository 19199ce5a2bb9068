"""Checkpoint loading in every official format, and clear errors for everything else."""
import collections

import pytest
import torch
from torch import nn

from export.adnet import ADNet
from export.checkpoint import load_adnet, main, read_state_dict
from export.errors import CheckpointError
from tests.factories import random_official_state_dict


@pytest.fixture(scope="module")
def trained():
    """A model after one real Adam step under nn.DataParallel, saved the way official train.py saves."""
    model = ADNet()
    model.load_state_dict({k: v.float() for k, v in random_official_state_dict().items()})
    parallel = nn.DataParallel(model)
    optimizer = torch.optim.Adam(parallel.parameters(), lr=1e-4)
    frames = [torch.rand(1, 6, 8, 8) for _ in range(3)]
    parallel(*frames).abs().mean().backward()
    optimizer.step()
    return parallel, optimizer


def _assert_same_weights(model, reference_state):
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference_state[key]), key


def test_official_training_checkpoint_with_module_prefix(trained, tmp_path):
    parallel, optimizer = trained
    path = tmp_path / "best_checkpoint.pth"
    torch.save({"epoch": 7, "state_dict": parallel.state_dict(), "optimizer": optimizer.state_dict()}, path)
    assert next(iter(parallel.state_dict())).startswith("module.")
    model = load_adnet(path)
    assert not model.training
    _assert_same_weights(model, parallel.module.state_dict())


def test_raw_state_dict_file(trained, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(trained[0].module.state_dict(), path)
    _assert_same_weights(load_adnet(path), trained[0].module.state_dict())


def test_raw_state_dict_with_prefix_and_in_memory_mappings(trained):
    prefixed = trained[0].state_dict()
    _assert_same_weights(load_adnet(prefixed), trained[0].module.state_dict())
    wrapped = {"model": collections.OrderedDict(trained[0].module.state_dict()), "epoch": 1}
    _assert_same_weights(load_adnet(wrapped), trained[0].module.state_dict())


def test_loads_into_a_given_model_and_half_weights_are_accepted(trained):
    half = {k: v.half() for k, v in trained[0].module.state_dict().items()}
    target = ADNet()
    assert load_adnet(half, model=target) is target
    assert target.conv1.weight.dtype == torch.float32


def test_state_dict_mapping_is_plain_tensors(trained):
    state = read_state_dict({"state_dict": trained[0].state_dict(), "epoch": 3})
    assert all(not k.startswith("module.") for k in state) and len(state) == 110


def test_missing_unexpected_and_misshaped_keys_are_listed():
    state = ADNet().state_dict()
    del state["conv1.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["post_conv.2.weight"] = torch.zeros(4, 64, 3, 3)
    with pytest.raises(CheckpointError) as err:
        load_adnet(state)
    message = str(err.value)
    assert "missing keys (1): conv1.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "post_conv.2.weight (4, 64, 3, 3) (model: (3, 64, 3, 3))" in message


def test_many_missing_keys_are_summarised():
    state = {k: v for k, v in ADNet().state_dict().items() if k.startswith("pyramid_feats")}
    with pytest.raises(CheckpointError, match=r"missing keys \(96\): .*\(84 more\)"):
        load_adnet(state)


def test_missing_file():
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_adnet("/nonexistent/adnet.pth")


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a torch checkpoint")
    with pytest.raises(CheckpointError, match="cannot read|refuses to unpickle"):
        load_adnet(path)


class _Pickled:
    """An arbitrary object: weights_only=True must refuse to unpickle it."""


def test_pickled_objects_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "with_object.pth"
    torch.save({"state_dict": ADNet().state_dict(), "args": _Pickled()}, path)
    with pytest.raises(CheckpointError, match=r"weights_only=True.*torch.save\(model.state_dict\(\)"):
        load_adnet(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_adnet(path)
    with pytest.raises(CheckpointError, match="'epoch' is a int"):
        load_adnet({"epoch": 3, "optimizer_step": torch.zeros(1)})


def test_cli_exit_codes(trained, tmp_path, capsys):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": trained[0].state_dict()}, good)
    assert main([str(good)]) == 0
    assert "2,956,483 parameters" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.pth")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err

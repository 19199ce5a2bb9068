"""Load ADNet weights from the formats official training produces.

Accepted: a raw state_dict; a training checkpoint {'epoch', 'state_dict', 'optimizer'} (other wrapper keys
'model' / 'params' too); keys with the 'module.' prefix that nn.DataParallel adds. Files are read with
torch.load(weights_only=True): no code from the file is executed.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Optional, Union

import torch
from torch import nn

from export.adnet import ADNet
from client.errors import reports_errors
from export.errors import CheckpointError

__all__ = ["read_state_dict", "check_state_dict", "load_adnet", "random_adnet"]

_WRAPPER_KEYS = ("state_dict", "model", "params")
_PREFIX = "module."
_LIST_LIMIT = 12

Source = Union[str, os.PathLike, Mapping]


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... ({len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def _load_file(path: Union[str, os.PathLike], map_location) -> object:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path!r}; pass the path of a .pth/.pt file saved by "
                              f"torch.save (e.g. the official training's best_checkpoint.pth)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), "")
        if detail:
            raise CheckpointError(
                f"{path!r} holds objects that torch.load(weights_only=True) refuses to unpickle "
                f"({detail.split(' was not')[0]}). Re-save only the weights from a trusted environment: "
                f"torch.save(model.state_dict(), 'adnet.pth')") from exc
        unreadable, reason = exc, "not a pickle torch.load can read"
    except Exception as exc:  # torch.load raises many types on a damaged or foreign file
        unreadable, reason = exc, f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}"
    raise CheckpointError(f"cannot read {path!r} as a PyTorch checkpoint ({reason}); the file is truncated or "
                          f"not a torch.save file") from unreadable


def read_state_dict(source: Source, map_location: Union[str, torch.device] = "cpu") -> dict[str, torch.Tensor]:
    """Return a plain {name: tensor} state dict from a file or an in-memory checkpoint in any official format."""
    obj = source if isinstance(source, Mapping) else _load_file(source, map_location)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a state dict; save "
                              f"model.state_dict() (or the training dict with a 'state_dict' entry)")
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"entry {name!r} is a {type(value).__name__}, not a tensor: this is not a state dict (top-level "
                f"keys: {_describe([str(k) for k in obj.keys()])}); expected the weights or a dict with "
                f"'state_dict'")
        state[name[len(_PREFIX):] if name.startswith(_PREFIX) else name] = value
    return state


def check_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    """Raise CheckpointError listing missing, unexpected and mis-shaped keys, if any."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} (model: {tuple(v.shape)})"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    not_float = [k for k in expected if k in state and not state[k].is_floating_point()]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_describe(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped ({len(misshaped)}): {_describe(misshaped)}")
    if not_float:
        problems.append(f"not floating point ({len(not_float)}): {_describe(not_float)}")
    if problems:
        raise CheckpointError(
            "checkpoint does not fit ADNet(6, 5, 64, 32): " + "; ".join(problems) + ". Use a checkpoint trained "
            "with the official ADNet code (graphs/adnet.py) in its paper configuration.")


def load_adnet(source: Source, model: Optional[nn.Module] = None,
               map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """Build (or fill) an ADNet from a checkpoint with strict key and shape checking; returns it in eval mode."""
    model = ADNet() if model is None else model
    state = read_state_dict(source, map_location)
    check_state_dict(state, model)
    model.load_state_dict(state, strict=True)
    return model.eval()


def random_adnet(seed: int = 0, offset_gain: float = 1.0) -> nn.Module:
    """A seeded, randomly initialised ADNet (eval mode) for demos and tests when no checkpoint is given.

    Unlike the official initialisation (zero offset predictors), the offset/mask convolutions get He-scaled
    weights too (times `offset_gain`), so the deformable sampling is exercised with offsets of about a pixel.
    The outputs are meaningless as images; they only make the pipeline run end to end.
    """
    gen = torch.Generator().manual_seed(seed)
    model = ADNet()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".weight"):
                gain = offset_gain if "conv_offset_mask" in name else 2 ** 0.5
                param.copy_(torch.randn(param.shape, generator=gen) * gain / param[0].numel() ** 0.5)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.01)
    return model.eval()


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    """`python -m export.checkpoint CKPT`: check that a checkpoint loads into ADNet and summarise it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m export.checkpoint", description=main.__doc__)
    parser.add_argument("checkpoint", help="official ADNet checkpoint (.pth), any supported format")
    args = parser.parse_args(argv)
    model = load_adnet(args.checkpoint)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"ok: {args.checkpoint} loads into ADNet with strict=True "
          f"({len(model.state_dict())} tensors, {n_params:,} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

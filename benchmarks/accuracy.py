"""Accuracy of the deployment: each backend's HDR against PyTorch FP32 eager (and against ground truth, DATA=).

Scores follow NTIRE 2021 (client/hdr_math.py): PSNR-l on gamma-domain images with peak max(reference) and PSNR-mu
after linearising, normalising by the reference's 99th percentile and mu-law tone mapping. Backends return linear
HDR (the contract's output), so both images are taken back to the gamma domain (x ** (1/2.24)) first. The
relative L2 error is computed on the linear outputs. Equal images give PSNR = inf.
"""
from __future__ import annotations

import math

import numpy as np

from client import hdr_math

__all__ = ["compare", "summarize_scores"]


def compare(ref_linear: np.ndarray, out_linear: np.ndarray) -> dict:
    """NTIRE PSNR-l / PSNR-mu (dB) and the relative L2 error of one output against its reference."""
    ref = np.asarray(ref_linear, dtype=np.float64)
    out = np.asarray(out_linear, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference's {ref.shape}")
    finite = bool(np.isfinite(out).all())
    if not finite:
        return {"psnr_l_db": None, "psnr_mu_db": None, "rel_l2": None, "finite": False}
    ref_g, out_g = hdr_math.delinearize(ref), hdr_math.delinearize(out)
    norm = float(np.linalg.norm(ref))
    return {"psnr_l_db": hdr_math.ntire_psnr_l(ref_g, out_g), "psnr_mu_db": hdr_math.ntire_psnr_mu(ref_g, out_g),
            "rel_l2": float(np.linalg.norm(out - ref)) / norm if norm > 0 else None, "finite": True}


def summarize_scores(scores: list[dict]) -> dict:
    """Mean and worst (min PSNR, max error) over scenes; NaN-free (None when nothing was scored)."""
    def values(key):
        return [s[key] for s in scores if s.get(key) is not None]

    def mean(v):  # identical images (inf dB) do not take part unless all are identical
        finite = [x for x in v if not math.isinf(x)]
        return float(np.mean(finite)) if finite else (math.inf if v else None)

    l, mu, err = values("psnr_l_db"), values("psnr_mu_db"), values("rel_l2")
    return {"scenes": len(scores), "all_finite": all(s.get("finite", True) for s in scores),
            "psnr_l_mean_db": mean(l), "psnr_l_min_db": min(l) if l else None,
            "psnr_mu_mean_db": mean(mu), "psnr_mu_min_db": min(mu) if mu else None,
            "rel_l2_max": max(err) if err else None}

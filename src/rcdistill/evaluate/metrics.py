"""Set-level image metrics: FID and KID (clean-fid's formulas on given features)."""
from __future__ import annotations

import logging

import numpy as np
from cleanfid import fid as cleanfid

log = logging.getLogger(__name__)


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if min(len(a), len(b)) <= a.shape[1]:
        # fewer images than feature dimensions: both covariances are singular and clean-fid's
        # sqrtm would spend seconds (about 12 s at 2048-d) before refusing a complex result
        return _fid_symmetric(a, b)
    try:
        return float(cleanfid.fid_from_feats(a, b))
    except (ValueError, TypeError) as err:
        # ValueError: clean-fid refuses a complex sqrtm(S_a S_b), which happens when there are fewer
        # images than feature dimensions (2048 for Inception), so both covariances are singular.
        # TypeError: clean-fid 0.1.35 passes scipy's sqrtm a `disp` argument that newer scipy
        # removed (seen on a GPU image). The trace term equals the sum of sqrt(eigenvalues) of the
        # symmetric PSD sqrt(S_a) S_b sqrt(S_a), which stays real; same value where clean-fid's works.
        log.warning("clean-fid's fid_from_feats failed (%s: %s); FID computed from the eigenvalues of the "
                    "symmetric form instead (the same value where clean-fid's works)", type(err).__name__, err)
        return _fid_symmetric(a, b)


def _fid_symmetric(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(inner).sum()
    return float(max(value, 0.0))  # rounding can leave -1e-3 for identical sets


def kid(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int, seed: int = 0) -> float:
    """clean-fid's KID draws its subsets from numpy's global RNG: seed it, then put it back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        size = min(1000, len(feats_a), len(feats_b))
        return float(cleanfid.kernel_distance(np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64),
                                              num_subsets=subsets, max_subset_size=size))
    finally:
        np.random.set_state(state)

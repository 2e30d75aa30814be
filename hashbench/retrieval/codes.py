"""Binary codes: binarisation of network outputs and label-conditioned centre codes.

Centre codes (CgAT's CHCM, SAAT's DMFL) summarise a bank of database codes for a query
label vector ``y``. With positives ``P = {j : y·l_j > 0}``, negatives ``N`` (the rest)
and non-negative weights ``w⁺_j`` (on P) and ``w⁻_j`` (on N), the centre code is::

    c = argmin_{b ∈ {−1,+1}^K}  Σ_{j∈P} w⁺_j d_H(b, b_j) − Σ_{j∈N} w⁻_j d_H(b, b_j)

Since ``d_H(b, b_j) = (K − b·b_j) / 2``, the objective equals a constant minus
``½ b·v`` with ``v = Σ_P w⁺_j b_j − Σ_N w⁻_j b_j``, so it separates over bits and is
minimised by ``c = sign(v)``. A bit with ``v_k = 0`` is returned as 0: there both
values of that bit are optimal (this matches the released CgAT and SAAT code, which
also take ``sign`` of the difference).

Weightings:

* ``"cgat"``: uniform means, ``w⁺ = 1/|P|`` and ``w⁻ = 1/|N|``.
* ``"saat"``: label cosine ``s_j = y·l_j / (‖y‖‖l_j‖ + 1e-8)``, ``w⁺_j = s_j / Σ_P s``,
  and uniform ``w⁻ = 1/|N|``.

An empty side contributes nothing, so a query with no positives (e.g. an all-zero label
vector) gets ``sign(−mean of the bank)``: always finite (``one_sided="other"``, SAAT's
DMFL).  ``one_sided="zero"`` gives such a query, and one with no negatives, the zero code
instead, as CgAT's CHCM does: it scales each side's sum by the other side's size.

The bank may also hold continuous codes in [−1, 1] (CgAT's and SAAT's training loops compute
their guide codes on the networks' tanh outputs); exact ties are then a matter of chance.

Exact ties. ``v`` is computed up to a positive per-query factor so that ties come out as
exactly 0 rather than as rounding noise: for ``"cgat"``, ``|N|·ΣP b − |P|·ΣN b`` is an
integer computation (exact in float64); for ``"saat"``, positives are grouped by their
weight, which depends only on the integers ``(y·l_j, |l_j|)``, so each group's code sum
is an exact integer and a bit whose integer group coefficients all cancel is exactly 0.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from hashbench.api.dataset import HashDataset
from hashbench.models.hash_model import HashModel
from hashbench.retrieval.shapes import check_agree
from hashbench.retrieval.training import to_device

__all__ = ["center_codes", "to_binary", "ENCODE_BATCH", "WEIGHTINGS"]

#: images per forward pass when a model encodes a split (the encode stage; the cost model times it)
ENCODE_BATCH = 256

#: Accepted values of ``center_codes(..., weighting=...)``.
WEIGHTINGS = ("cgat", "saat")

_COSINE_EPS = 1e-8

#: Accepted values of ``center_codes(..., one_sided=...)``.
ONE_SIDED = ("other", "zero")


def _as_tensor(x: Any, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.from_numpy(np.ascontiguousarray(x))
    return t if device is None else t.to(device)


def to_binary(u: Any) -> torch.Tensor:
    """Binarise continuous outputs into int8 ``±1`` codes: ``+1`` where ``u ≥ 0``, else ``−1``.

    An exact 0 maps to ``+1`` so that every code is strictly binary. Accepts numpy arrays
    or tensors of any shape; the result stays on the input's device. NaN raises ValueError.
    """
    t = _as_tensor(u)
    if t.is_floating_point() and bool(torch.isnan(t).any()):
        raise ValueError("to_binary: input contains NaN")
    return torch.where(t >= 0, 1, -1).to(torch.int8)


def center_codes(
    query_labels: Any,
    bank_codes: Any,
    bank_labels: Any,
    weighting: str = "cgat",
    *,
    one_sided: str = "other",
    max_elements: int = 2**23,
) -> torch.Tensor:
    """Centre code of each query label vector against a bank of codes (see module docstring).

    ``query_labels`` is ``B×C`` multi-hot, ``bank_codes`` ``N×K`` with values in [−1, 1]
    (binary codes {−1, 0, +1}, or continuous outputs), ``bank_labels`` ``N×C`` multi-hot.
    Returns a ``B×K`` float32 tensor with values in {−1, 0, +1} on the device of
    ``bank_codes`` (CPU for numpy input).  ``one_sided`` ("other" or "zero") is the code of a
    query without positives or without negatives.  ``max_elements`` bounds the ``B×N``
    weight block processed at once.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; expected one of 'cgat', 'saat'")
    if one_sided not in ONE_SIDED:
        raise ValueError(f"unknown one_sided {one_sided!r}; expected one of 'other', 'zero'")
    if isinstance(max_elements, bool) or int(max_elements) != max_elements or max_elements < 1:
        raise ValueError(f"max_elements must be a positive integer, got {max_elements!r}")
    codes = _as_tensor(bank_codes)
    device = codes.device
    codes = codes.to(torch.float64)
    y = _as_tensor(query_labels, device).to(torch.float64)
    lab = _as_tensor(bank_labels, device).to(torch.float64)
    for name, t in (("query_labels", y), ("bank_codes", codes), ("bank_labels", lab)):
        if t.dim() != 2:
            raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}")
    check_agree("row mismatch", "bank_codes", codes.shape, 0, "bank_labels", lab.shape, 0)
    check_agree("class count mismatch", "query_labels", y.shape, 1, "bank_labels", lab.shape, 1)
    if codes.shape[0] == 0:
        raise ValueError("bank_codes is empty")
    if not bool(((codes >= -1) & (codes <= 1)).all()):  # also refuses NaN
        raise ValueError("bank_codes must lie in [-1, 1] (binary codes or tanh outputs)")
    for name, t in (("query_labels", y), ("bank_labels", lab)):
        if bool(((t != 0) & (t != 1)).any()):
            raise ValueError(f"{name} must be multi-hot with values 0/1")

    out = torch.empty(y.shape[0], codes.shape[1], dtype=torch.float32, device=device)
    rows = max(1, int(max_elements) // codes.shape[0])
    if weighting == "saat":
        counts = lab.sum(dim=1)
        groups = [
            (int(c), codes[counts == c], lab[counts == c].t().contiguous())
            for c in torch.unique(counts[counts > 0]).tolist()
        ]
    for start in range(0, y.shape[0], rows):
        yc = y[start : start + rows]
        if weighting == "cgat":
            v = _cgat_direction(yc, codes, lab)
        else:
            v = _saat_direction(yc, codes, groups)
        if one_sided == "zero":
            n_pos = ((yc @ lab.t()) > 0).sum(dim=1)
            v[(n_pos == 0) | (n_pos == codes.shape[0])] = 0
        out[start : start + rows] = torch.sign(v).to(torch.float32)
    return out


def _cgat_direction(y: torch.Tensor, codes: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
    """``v·|P|·|N| = |N|·ΣP b − |P|·ΣN b``: integer arithmetic (exact in float64)."""
    pos = (y @ lab.t()) > 0
    n_pos = pos.sum(dim=1, keepdim=True).to(torch.float64)
    n_neg = codes.shape[0] - n_pos
    # An empty side's factor is replaced by 1; that side's sum is 0 anyway.
    w_pos = n_neg.clamp(min=1).expand_as(pos)
    w_neg = n_pos.clamp(min=1).expand_as(pos)
    return torch.where(pos, w_pos, -w_neg) @ codes


def _saat_direction(
    y: torch.Tensor, codes: torch.Tensor, groups: list[tuple[int, torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """``v`` scaled by ``max(|N|, 1)·Σ_P s`` (or by ``|N|`` when P is empty).

    ``groups`` splits the bank by label count: ``(count, codes, labels transposed)``.
    Within a count, a positive's weight depends only on its dot product with ``y``, so
    each (count, dot) group g contributes ``f_g·(|N|·Z_g − n_g·ΣN b)`` with ``Z_g`` its
    integer code sum and ``n_g`` its size: exact integer coefficients, so a bit where
    they all cancel is exactly 0. The cost is about (number of distinct dot values)
    code products rather than one.
    """
    k_bits = codes.shape[1]
    y_norm = y.norm(dim=1, keepdim=True)
    max_dot = int(y.sum(dim=1).max().item())
    terms = []  # (f_g, Z_g, n_g)
    sum_pos = torch.zeros(y.shape[0], k_bits, dtype=torch.float64, device=codes.device)
    n_pos = torch.zeros(y.shape[0], 1, dtype=torch.float64, device=codes.device)
    for count, codes_c, lab_c_t in groups:
        dots = y @ lab_c_t  # exact small integers
        for dot in range(1, min(count, max_dot) + 1):
            mask = (dots == dot).to(torch.float64)
            size = mask.sum(dim=1, keepdim=True)
            if not bool(size.any()):
                continue
            z = mask @ codes_c
            # Same float operations as the definition s = y·l / (‖y‖‖l‖ + eps).
            f = dot / (y_norm * math.sqrt(count) + _COSINE_EPS)
            terms.append((f, z, size))
            sum_pos += z
            n_pos += size
    sum_neg = codes.sum(dim=0) - sum_pos
    n_neg = (codes.shape[0] - n_pos).clamp(min=1)  # an empty N has ΣN b = 0 anyway
    # No positives: v = −mean_N b, i.e. −ΣN b after scaling.
    v = torch.where(n_pos > 0, torch.zeros_like(sum_neg), -sum_neg)
    for f, z, size in terms:
        v += f * (n_neg * z - size * sum_neg)
    return v


@torch.no_grad()
def encode_batches(model: HashModel, count: int, images: Callable[[slice], torch.Tensor], device: torch.device,
                   advance: Callable[[int], None]) -> torch.Tensor:
    """int8 ±1 codes of ``count`` images that ``images(slice)`` gives :data:`ENCODE_BATCH` at a time (eval mode)."""
    model.eval()
    codes = []
    for start in range(0, count, ENCODE_BATCH):
        batch = images(slice(start, start + ENCODE_BATCH))
        codes.append(to_binary(model(to_device(batch, device))).cpu())
        advance(batch.shape[0])
    return torch.cat(codes) if codes else torch.zeros(0, model.bits, dtype=torch.int8)


def encode_images(model: HashModel, dataset: HashDataset, indices: np.ndarray, device: torch.device,
                  advance: Callable[[int], None] = lambda n: None) -> torch.Tensor:
    """int8 ±1 codes of dataset items (eval mode, no augmentation)."""
    return encode_batches(model, len(indices), lambda part: dataset.images(indices[part]), device, advance)

"""Anchor codes of the P2P and DHTA targeted attacks (Bai et al., ECCV 2020; spec §2.1–2.2).

For a target label ``t`` the *anchor pool* is the set of database items whose label vector
equals ``t`` exactly.  ``n`` of them are drawn at random and the anchor code is their
component-wise majority vote ``a = sign(Σ_j b_j)`` (P2P: ``n = 1``, the code of one item).

* Drawing.  With replacement (``replace=True``, as the re-implementations of the CgAT/SAAT
  lab: ProS-GAN, TAD and SAAT ``dhta.py``), any non-empty pool gives ``n`` draws and an odd
  ``n`` never ties.  Without replacement (the official DHTA code) a pool smaller than ``n``
  contributes all its items; a bit whose vote then ties is 0 and does not pull.
* Fallback.  The split's target labels are drawn from the database's own label vectors, so
  an exact match always exists there.  For any other target (a custom split, a database
  subset) the pool falls back to the database items with the highest Jaccard similarity
  ``|t ∧ l| / |t ∨ l|`` to the target, which is the exact-match set whenever one exists.  A
  target that shares no class with any database item has no anchor and raises ValueError.

Every random draw uses the caller's ``torch.Generator`` (on the CPU), so anchors are
reproducible for a seed.
"""

from __future__ import annotations

import torch

__all__ = ["anchor_pool", "draw_anchors", "vote", "anchor_codes"]


def anchor_pool(targets: torch.Tensor, db_labels: torch.Tensor) -> torch.Tensor:
    """``B×N`` bool: the database items eligible as anchors of each target label (see module doc)."""
    if targets.dim() != 2 or db_labels.dim() != 2 or targets.shape[1] != db_labels.shape[1]:
        raise ValueError(
            f"targets and db_labels must be 2-D with the same number of classes, "
            f"got {tuple(targets.shape)} and {tuple(db_labels.shape)}"
        )
    t = (targets != 0).to(torch.float64)
    lab = (db_labels != 0).to(torch.float64).to(t.device)
    shared = t @ lab.T  # exact small integers
    t_count = t.sum(dim=1, keepdim=True)
    l_count = lab.sum(dim=1).unsqueeze(0)
    union = t_count + l_count - shared
    exact = union == shared  # identical label vectors (also the all-zero pair)
    jaccard = torch.where(union > 0, shared / union.clamp(min=1), torch.ones_like(shared))
    best = jaccard.amax(dim=1, keepdim=True)
    nearest = (jaccard == best) & (shared > 0)
    pool = torch.where(exact.any(dim=1, keepdim=True), exact, nearest)
    orphans = (~pool.any(dim=1)).nonzero().flatten()
    if orphans.numel():
        row = int(orphans[0])
        raise ValueError(
            f"target label {targets[row].int().tolist()} (batch row {row}) shares no class with any "
            f"database item, so it has no anchor code"
        )
    return pool


def draw_anchors(
    pool: torch.Tensor, n: int, generator: torch.Generator | None, *, replace: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniform draws from each row's pool: (indices ``B×n``, valid ``B×n``).

    Without replacement, draws past the pool's size are marked invalid (their index is 0).
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"the number of anchors must be a positive integer, got {n!r}")
    b, size = pool.shape
    counts = pool.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError("every target needs a non-empty anchor pool")
    if replace:
        u = torch.rand((b, n), generator=generator, device="cpu", dtype=torch.float64).to(pool.device)
        rank = torch.minimum((u * counts.unsqueeze(1)).long(), counts.unsqueeze(1) - 1)
        # the (rank+1)-th eligible column is the first where the running count reaches rank+1
        index = torch.searchsorted(pool.long().cumsum(dim=1), rank + 1)
        return index, torch.ones_like(index, dtype=torch.bool)
    keys = torch.rand((b, size), generator=generator, device="cpu").to(pool.device)
    keys = torch.where(pool, keys, torch.full_like(keys, 2.0))  # ineligible items sort last
    take = min(n, size)
    index = keys.topk(take, dim=1, largest=False).indices
    valid = torch.arange(take, device=pool.device).unsqueeze(0) < counts.unsqueeze(1)
    if take < n:
        pad = n - take
        index = torch.cat([index, index.new_zeros(b, pad)], dim=1)
        valid = torch.cat([valid, valid.new_zeros(b, pad)], dim=1)
    return torch.where(valid, index, torch.zeros_like(index)), valid


def vote(db_codes: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Component-wise majority vote ``sign(Σ_valid b_j)`` of the drawn codes (``B×K``, a tie gives 0)."""
    drawn = db_codes[index] * valid.unsqueeze(-1).to(db_codes.dtype)
    return torch.sign(drawn.sum(dim=1))


def anchor_codes(
    targets: torch.Tensor,
    db_codes: torch.Tensor,
    db_labels: torch.Tensor,
    n: int,
    generator: torch.Generator | None,
    *,
    replace: bool = True,
) -> torch.Tensor:
    """The anchor code of each target label: the vote of ``n`` codes drawn from its pool."""
    pool = anchor_pool(targets.to(db_labels.device), db_labels)
    index, valid = draw_anchors(pool, n, generator, replace=replace)
    return vote(db_codes.float(), index, valid)

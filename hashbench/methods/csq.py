"""CSQ: Central Similarity Quantization (Yuan et al., CVPR 2020), in CgAT's multi-label form (spec §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from hashbench.api.method import HashMethod, TrainParams

#: draws of the random extra centres before giving up on the distance thresholds (the original's budget)
CENTER_DRAWS = 20


def hadamard(k: int) -> torch.Tensor:
    """The k×k Sylvester Hadamard matrix (±1 entries, mutually orthogonal rows); k a power of 2."""
    if k < 1 or k & (k - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power of 2, got {k}")
    h = torch.ones(1, 1)
    while h.shape[0] < k:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def balanced_codes(n: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """n random ±1 codes, each with exactly ⌊bits/2⌋ entries −1 at uniformly drawn positions."""
    codes = torch.ones(n, bits)
    for row in codes:
        row[torch.randperm(bits, generator=generator)[: bits // 2]] = -1
    return codes


def pairwise_distances(codes: torch.Tensor) -> torch.Tensor:
    """Hamming distances of every unordered pair of distinct rows (empty for one row)."""
    i, j = torch.triu_indices(len(codes), len(codes), offset=1)
    return (codes[i] != codes[j]).sum(1).float()


def hash_centers(num_classes: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """C×K hash centres: the first C rows of [H_K; −H_K], plus random balanced rows when 2K < C.

    The extra rows are redrawn (at most 20 times) until every pair of centres is more than K/4
    apart and the mean pairwise distance is at least K/2; if no draw qualifies, the draw with
    the largest minimum (then mean) distance is kept.  When K is not a power of 2 there is no
    Hadamard matrix and every centre is a random balanced row (as in the CSQ paper).
    """
    power_of_two = (bits & (bits - 1)) == 0
    base = torch.cat([hadamard(bits), -hadamard(bits)]) if power_of_two else torch.zeros(0, bits)
    fixed = base[:num_classes]
    extra = num_classes - len(fixed)
    if extra == 0:
        return fixed
    best, best_score = None, None
    for _ in range(CENTER_DRAWS):
        centers = torch.cat([fixed, balanced_codes(extra, bits, generator)])
        dist = pairwise_distances(centers)
        score = (float(dist.min()), float(dist.mean())) if len(dist) else (float(bits), float(bits))
        if best_score is None or score > best_score:
            best, best_score = centers, score
        if score[0] > bits / 4 and score[1] >= bits / 2:
            break
    return best


class CSQ(HashMethod):
    """Binary cross-entropy of each output to its label's hash centre plus a quantisation term.

    Paper: L. Yuan, T. Wang, X. Zhang, F. E. H. Tay, Z. Jie, W. Liu, J. Feng. *Central
    Similarity Quantization for Efficient Image and Video Retrieval*. CVPR 2020.

    Loss (cgat_spec §4): ``BCE((u + 1)/2, (c(y) + 1)/2) + λ·mean((|u| − 1)²)`` with means over
    all batch entries.  Class centres ``h_1..h_C`` come from :func:`hash_centers` (Hadamard rows,
    random balanced rows when 2K < C); the centre of a multi-hot label is
    ``c(y) = sign(Σ_{c∈y} h_c)`` with a zero sum's bits taken from a fixed random ±1 tie vector
    (so an unlabelled item's centre is the tie vector).

    The random draws (extra centres, then the tie vector) come from a generator seeded with
    ``center_seed``, so the centres depend only on (K, C, ``center_seed``).  Centres and tie
    vector are part of the trained model's artifact (:meth:`state_tensors`); once loaded,
    :meth:`setup` keeps them, so adversarial training uses the centres of clean training.

    Parameters: ``lam`` (λ, quantisation weight) 1e-4, ``center_seed`` (seed of the random
    centres and tie vector) 0, and the clean-training settings of :class:`TrainParams`.
    """

    name = "csq"
    description = "BCE to Hadamard hash centres of the labels + quantisation"
    paper = "Yuan et al. Central Similarity Quantization for Efficient Image and Video Retrieval. CVPR 2020"

    class Params(TrainParams):
        lam: float = Field(1e-4, ge=0, description="quantisation weight λ")
        center_seed: int = Field(0, ge=0, description="seed of the random centres and tie vector")

    centers: torch.Tensor | None = None
    tie: torch.Tensor | None = None

    def setup(self, num_train: int, bits: int, train_labels: torch.Tensor, device: torch.device | str) -> None:
        """Draw the centres for (K, C) unless centres were loaded, which must match (K, C)."""
        super().setup(num_train, bits, train_labels, device)
        num_classes = train_labels.shape[1]
        if self.centers is None:
            generator = torch.Generator().manual_seed(self.params.center_seed)
            self.centers = self.draw_centers(num_classes, bits, generator)
            self.tie = torch.randint(0, 2, (bits,), generator=generator).float() * 2 - 1
        elif self.centers.shape != (num_classes, bits):
            raise ValueError(
                f"{self.name}: the loaded hash centres are {tuple(self.centers.shape)}, but this run has "
                f"{num_classes} classes and {bits} bits"
            )
        self.centers = self.centers.to(device)
        self.tie = self.tie.to(device)

    def draw_centers(self, num_classes: int, bits: int, generator: torch.Generator) -> torch.Tensor:
        """The C×K class centres (CSQ: :func:`hash_centers`); methods with other centres override it."""
        return hash_centers(num_classes, bits, generator)

    def label_centers(self, y: torch.Tensor) -> torch.Tensor:
        """``sign(y·H)``, with zero sums filled from the tie vector."""
        total = y.float() @ self.centers
        return torch.where(total == 0, self.tie.expand_as(total), torch.sign(total))

    def center_loss(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``BCE((u + 1)/2, (c(y) + 1)/2)``, the mean over all batch entries (in float32)."""
        u = u.float()
        with torch.autocast(u.device.type, enabled=False):  # torch's BCE refuses to run under autocast
            return F.binary_cross_entropy((u + 1) / 2, (self.label_centers(y) + 1) / 2)

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        quantisation = (u.float().abs() - 1).pow(2).mean()
        return self.center_loss(u, y) + self.params.lam * quantisation

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.centers is None:
            return {}
        return {"centers": self.centers.detach().cpu(), "tie": self.tie.detach().cpu()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if not tensors:
            return
        missing = {"centers", "tie"} - set(tensors)
        if missing:
            raise ValueError(f"{self.name}: the model artifact lacks {', '.join(sorted(missing))}")
        self.centers = tensors["centers"].float()
        self.tie = tensors["tie"].float()

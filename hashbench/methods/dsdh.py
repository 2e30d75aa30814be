"""DSDH: Deep Supervised Discrete Hashing (Li, Sun, He, Tan, NeurIPS 2017)."""

from __future__ import annotations

import torch
from pydantic import Field

from hashbench.api.method import HashMethod, TrainParams, pairwise_logistic
from hashbench.api.params import MAX_ITERATIONS


class DSDH(HashMethod):
    """Pairwise likelihood on the training bank plus a linear classifier on discrete codes.

    Loss (spec §4, CgAT's form), for the batch outputs ``u`` (b×K), labels ``y`` (b×C) and
    training positions ``idx``:
    ``mean_ij[log(1+e^{-|θ_ij|}) + max(θ_ij, 0) − s_ij θ_ij] + μ·mean((y − B[idx] W)²) + ν·mean(W²)``
    with ``θ_ij = ½ u_i·U_j`` against every training item j and ``s_ij = 1[y_i·l_j > 0]``.  The bank
    rows of the batch are overwritten with the current (detached) outputs first.

    ``B`` (N×K, ±1) and the classifier ``W`` (K×C) are constants for the network; at the start of
    every epoch they are refreshed by discrete cyclic coordinate descent (DCC) on
    ``F(B, W) = ‖Y − BW‖² + (ν/μ)‖W‖² + (η/μ)‖B − U‖²`` (U, Y: the bank), ``dcc_iter`` sweeps of
    a W-step ``W = (BᵀB + (ν/μ)I)⁻¹BᵀY`` (ridge regression) followed by a B-step that solves
    each bit column exactly given the others, ``B[:, k] = sign(P[:, k] − B_{≠k} W_{≠k} w_k)`` with
    ``P = YWᵀ + (η/μ)U`` and ``w_k`` the k-th row of W.  As in the released code, the W kept is
    the one of the last W-step (fitted to B before the last B-step).

    Initial B: ``sign(U)`` of the bank at the first DCC of a run.  In clean training the bank is
    still zero, so B starts at 0 and the first DCC yields B = W = 0 (spec §1.3: epoch 0 then
    trains the likelihood alone); in adversarial training the bank was preinstalled with the
    clean model's codes before the first epoch, so B starts from them (spec §1.5).  No random
    draw is involved.  B and W are not part of the model artifact (:meth:`state_tensors` is
    empty): like CgAT's released adversarial stage, a defense rebuilds them from the
    preinstalled bank instead of continuing from the clean run's values.

    Parameters: ``mu`` (μ, classification weight, 1), ``nu`` (ν, classifier L2 weight, 1),
    ``eta`` (η, weight of ‖B − U‖² in the discrete problem, 55), ``dcc_iter`` (DCC sweeps per
    epoch, 10), and the clean-training settings of :class:`TrainParams` (SGD lr 0.01, momentum
    0.9, weight decay 5e-4, batch 64, 100 epochs, ×0.1 every third of the epochs).
    """

    name = "dsdh"
    description = "pairwise likelihood + linear classifier on discrete codes updated by DCC each epoch"
    paper = "Li, Sun, He, Tan. Deep Supervised Discrete Hashing. NeurIPS 2017"
    uses_bank = True

    class Params(TrainParams):
        mu: float = Field(1.0, gt=0, description="weight μ of the classification term")
        nu: float = Field(1.0, gt=0, description="weight ν of the classifier's L2 regulariser")
        eta: float = Field(55.0, ge=0, description="weight η of ‖B − U‖² in the discrete update")
        dcc_iter: int = Field(10, gt=0, le=MAX_ITERATIONS, description="DCC sweeps per epoch")

    codes: torch.Tensor
    classifier: torch.Tensor

    def setup(self, num_train: int, bits: int, train_labels: torch.Tensor, device: torch.device | str) -> None:
        super().setup(num_train, bits, train_labels, device)
        bank = self.bank
        self.codes = torch.sign(bank.u)
        self.classifier = torch.zeros(bits, bank.labels.shape[1], device=bank.u.device)
        # B is re-read from the bank at the first DCC, after a defense's preinstall.
        self._codes_from_bank = True

    def on_epoch_start(self, epoch: int) -> None:
        """Refresh B and W by ``dcc_iter`` DCC sweeps on the current bank."""
        if self._codes_from_bank:
            self.codes = torch.sign(self.bank.u)
            self._codes_from_bank = False
        codes = self.codes
        for _ in range(self.params.dcc_iter):
            codes, classifier = self.dcc_sweep(codes)
        self.codes, self.classifier = codes, classifier

    def dcc_sweep(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One DCC sweep from ``codes`` (N×K): the W-step, then the bit-by-bit B-step.

        Returns the new codes and the W fitted to the *input* codes.
        """
        p = self.params
        u, y = self.bank.u, self.bank.labels
        bits = codes.shape[1]
        eye = torch.eye(bits, device=codes.device, dtype=codes.dtype)
        w = torch.linalg.solve(codes.T @ codes + (p.nu / p.mu) * eye, codes.T @ y)
        target = y @ w.T + (p.eta / p.mu) * u
        codes = codes.clone()
        gram = w @ w.T  # K×K: B_{≠k} W_{≠k} w_k = B·gram[:, k] − B[:, k]·gram[k, k]
        for k in range(bits):
            others = codes @ gram[:, k] - codes[:, k] * gram[k, k]
            codes[:, k] = torch.sign(target[:, k] - others)
        return codes, w

    def dcc_objective(self, codes: torch.Tensor, classifier: torch.Tensor) -> float:
        """F(B, W) = ‖Y − BW‖² + (ν/μ)‖W‖² + (η/μ)‖B − U‖², the problem DCC descends."""
        p = self.params
        u, y = self.bank.u, self.bank.labels
        fit = (y - codes @ classifier).pow(2).sum()
        return float(fit + (p.nu / p.mu) * classifier.pow(2).sum() + (p.eta / p.mu) * (codes - u).pow(2).sum())

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        p = self.params
        bank = self.bank
        bank.update(idx, u)
        likelihood = pairwise_logistic(0.5 * u @ bank.u.T, bank.similarity(y)).mean()
        classification = (y - self.codes[idx] @ self.classifier).pow(2).mean()
        regulariser = self.classifier.pow(2).mean()
        return likelihood + p.mu * classification + p.nu * regulariser

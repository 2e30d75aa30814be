"""DPN: Deep Polarized Network (Fan, Ng, Ju, Zhang, Chan, IJCAI 2020), in the form of SAAT's code."""

from __future__ import annotations

import torch
from pydantic import Field

from hashbench.api.method import TrainParams
from hashbench.methods.csq import CSQ, balanced_codes


class DPN(CSQ):
    """A bit-wise hinge ("polarization") loss towards random class target codes.

    Paper: L. Fan, K. W. Ng, C. Ju, T. Zhang, C. S. Chan. *Deep Polarized Network for
    Supervised Learning of Accurate Binary Hashing Codes*. IJCAI 2020.

    Loss (SAAT's ``dpn.py``, DeepHash-pytorch's ``DPN.py``): ``mean(max(m − u ⊙ t(y), 0))`` over
    all batch entries, where ``t(y)`` is the item's target code.  The class targets are random
    balanced ±1 rows (K/2 entries −1 at uniformly drawn positions, the paper's random
    assignment with p = ½); a multi-label item's target is ``sign(Σ_{c∈y} t_c)`` with zero sums
    filled from a fixed random ±1 tie vector, exactly as CSQ builds multi-label centres (this
    class reuses CSQ's centre machinery: drawn from ``center_seed``, stored with the model, kept
    by defenses).  The paper's adaptive updating of the targets (DPN-A) is not used, as in both
    released codes (SAAT never calls it).

    DeepHash-pytorch's network outputs are not squashed; here, as in SAAT, they are tanh outputs,
    so with m = 1 no entry ever clears the margin and every entry keeps pushing.  On small data this can pull
    every bit to the code most targets agree with (one code for the whole database: on a 300-item
    4-class ``shapes`` split at every lr tried); a margin below 1 lets well-polarised entries go
    (m = 0.5 learned there).

    Parameters: ``margin`` (m) 1, ``center_seed`` (seed of the targets and tie vector) 0, and the
    clean-training settings of :class:`TrainParams`.
    """

    name = "dpn"
    description = "bit-wise hinge (polarization) loss towards random balanced class codes"
    paper = ("Fan, Ng, Ju, Zhang, Chan. Deep Polarized Network for Supervised Learning of Accurate Binary "
             "Hashing Codes. IJCAI 2020")

    class Params(TrainParams):
        margin: float = Field(1.0, gt=0, description="margin m of the polarization hinge")
        center_seed: int = Field(0, ge=0, description="seed of the random class targets and tie vector")

    def draw_centers(self, num_classes: int, bits: int, generator: torch.Generator) -> torch.Tensor:
        return balanced_codes(num_classes, bits, generator)

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        u = u.float()
        return (self.params.margin - u * self.label_centers(y)).clamp(min=0).mean()

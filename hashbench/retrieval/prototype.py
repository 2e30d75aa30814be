"""The prototype network of THA and ATRDH (Wang, Zhang, Lu, Xu, SIGIR 2021; spec §2.4, §3).

A label vector ``t`` is mapped to a prototype code ``h(t) = tanh(W₃(W₂ relu(W₁ t)))`` (no
activation between the second and third layers, as in the released code); ``sign h(t)`` is
the target code of a targeted attack.  It is trained against a bank of training codes ``B``
(N×K, labels L) with a circle loss plus a quantisation term, for a batch of b labels:

* ``s_ij = h_i·b_j / K``; pair (i, j) is positive when ``t_i·l_j > 0``, negative otherwise;
* with ``a_p = [2 − s_p]₊`` and ``a_n = [s_n + 2]₊`` (held constant),
  ``L_circle = logsumexp_n(γ a_n s_n) + logsumexp_p(−γ a_p s_p)`` over all pairs of the batch;
* ``L = L_circle / b + w_q · Σ (sign h − h)² / b``  (``w_q`` = 1e-4).

Two quirks of the released code are parameters: ``triangular_mask`` (default true, faithful)
keeps only pairs with ``j > i`` — the code applies ``triu(diagonal=1)`` to the b×N label
matrix, which drops the first ``i+1`` training items for row ``i``, a negligible loss of
pairs when N ≫ b; ``circle_softplus`` (default false, [TAD]) wraps ``L_circle`` in softplus
as SAAT's copy does.  An empty positive (or negative) set contributes nothing.

The labels the net trains on are drawn from :func:`target_candidates`: the distinct label
vectors, the all-zero one included (``proto_zero_label``, default true), as both released
codes draw from ``unique(database labels)`` without removing it.
"""

from __future__ import annotations

import math
from typing import Annotated, Callable, Sequence

import torch
from pydantic import AfterValidator, Field, field_validator
from torch import nn

from hashbench.api.flops import class_flops
from hashbench.api.params import MAX_WIDTH, Params


def _check_betas(v: tuple[float, float]) -> tuple[float, float]:
    if not all(0 <= b < 1 for b in v):
        raise ValueError("Adam betas must lie in [0, 1)")
    return v


#: Adam's (β₁, β₂), each in [0, 1).
AdamBetas = Annotated[tuple[float, float], AfterValidator(_check_betas)]


class PrototypeParams(Params):
    """Architecture and optimisation of the prototype network (paper defaults)."""

    proto_hidden: tuple[int, int] = Field((4096, 512), description="widths of the two hidden layers")
    proto_lr: float = Field(1e-4, gt=0, description="Adam learning rate of the prototype net")
    proto_betas: AdamBetas = Field((0.5, 0.999), description="Adam betas of the prototype net")
    circle_gamma: float = Field(1.0, gt=0, description="γ, scale of the circle loss")
    proto_quantization: float = Field(1e-4, ge=0, description="weight of Σ(sign h − h)²/b")
    triangular_mask: bool = Field(True, description="keep only pairs j > i, as the released code")
    circle_softplus: bool = Field(False, description="wrap the circle loss in softplus (SAAT's copy)")
    proto_zero_label: bool = Field(True, description="train on the all-zero label vector too, as the released codes")

    @field_validator("proto_hidden")
    @classmethod
    def _positive_widths(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) <= 0:
            raise ValueError("hidden widths must be positive")
        if max(v) > MAX_WIDTH:
            raise ValueError(f"hidden widths must be at most {MAX_WIDTH}")
        return v


class PrototypeNet(nn.Module):
    """Label vector (C) → Linear(C, h₁) → ReLU → Linear(h₁, h₂) → Linear(h₂, K) → tanh."""

    def __init__(self, num_classes: int, bits: int, hidden: Sequence[int] = (4096, 512)) -> None:
        super().__init__()
        h1, h2 = hidden
        self.feature = nn.Sequential(nn.Linear(num_classes, h1), nn.ReLU(), nn.Linear(h1, h2))
        self.hash = nn.Linear(h2, bits)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.hash(self.feature(labels)))


def build_prototype_net(num_classes: int, bits: int, hidden: Sequence[int], generator: torch.Generator,
                        device: torch.device | str) -> PrototypeNet:
    """A prototype net with PyTorch's default ``Linear`` initialisation drawn from ``generator``."""
    with torch.device("meta"):  # allocate without drawing from the global generator
        net = PrototypeNet(num_classes, bits, hidden)
    net = net.to_empty(device="cpu")
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, nn.Linear):
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return net.to(device)


def prototype_training_flops(net: Callable[..., nn.Module], net_args: tuple, *, classes: int, bits: int,
                             batch: int, steps: int, train: int) -> int:
    """≈ FLOPs of ``steps`` steps of the prototype net ``net(*net_args)``, each on ``batch`` label
    vectors against ``train`` training codes and labels: the net and the batch × train code and
    label products, forward and backward (three forward passes' worth)."""
    per_label = class_flops(net, net_args, (1, classes))
    pairwise = 2 * batch * train * (bits + classes)
    return steps * 3 * (batch * per_label + pairwise)


def prototype_state(net: PrototypeNet) -> dict[str, torch.Tensor]:
    """The net's tensors (an attack's stored state)."""
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def load_prototype_net(state: dict[str, torch.Tensor], device: torch.device | str) -> PrototypeNet:
    """Rebuild a net from :func:`prototype_state`; the sizes are read from the tensors."""
    try:
        w1, w2, w3 = state["feature.0.weight"], state["feature.2.weight"], state["hash.weight"]
    except KeyError as exc:
        raise ValueError(f"prototype state lacks the tensor {exc.args[0]!r}") from None
    with torch.device("meta"):
        net = PrototypeNet(w1.shape[1], w3.shape[0], (w1.shape[0], w2.shape[0]))
    net.load_state_dict({k: v.to(device) for k, v in state.items()}, assign=True)
    return net.eval()


def target_candidates(labels: torch.Tensor, zero_label: bool = False) -> torch.Tensor:
    """The distinct label vectors of ``labels`` (float 0/1, sorted), to draw targets from; the
    all-zero vector only when ``zero_label`` (and some item has it)."""
    unique = torch.unique((labels > 0).float(), dim=0)
    if not zero_label:
        unique = unique[unique.sum(dim=1) > 0]
    if unique.shape[0] == 0:
        raise ValueError("no labelled item to draw target labels from")
    return unique


def sample_targets(candidates: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` rows drawn uniformly with replacement from ``candidates`` (on their device)."""
    rows = torch.randint(0, candidates.shape[0], (n,), generator=generator)
    return candidates[rows.to(candidates.device)]


def circle_loss(h: torch.Tensor, codes: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
                params: PrototypeParams) -> torch.Tensor:
    """The circle loss of prototypes ``h`` (b×K) for labels ``targets`` against ``codes`` (N×K, labels N×C)."""
    s = h @ codes.T / h.shape[1]
    positive = targets @ labels.T > 0
    negative = ~positive
    if params.triangular_mask:
        keep = torch.ones_like(positive).triu(diagonal=1)
        positive, negative = positive & keep, negative & keep
    s_p, s_n = s[positive], s[negative]
    a_p = (2 - s_p.detach()).clamp(min=0)
    a_n = (s_n.detach() + 2).clamp(min=0)
    loss = h.new_zeros(())
    if s_n.numel():
        loss = loss + torch.logsumexp(params.circle_gamma * a_n * s_n, dim=0)
    if s_p.numel():
        loss = loss + torch.logsumexp(-params.circle_gamma * a_p * s_p, dim=0)
    return nn.functional.softplus(loss) if params.circle_softplus else loss


def prototype_loss(h: torch.Tensor, codes: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
                   params: PrototypeParams) -> dict[str, torch.Tensor]:
    """``{"proto": total, "circle": L_circle/b, "proto_quant": w_q·Σ(sign h − h)²/b}``."""
    b = h.shape[0]
    circle = circle_loss(h, codes, targets, labels, params) / b
    quant = params.proto_quantization * (torch.sign(h) - h).pow(2).sum() / b
    return {"proto": circle + quant, "circle": circle, "proto_quant": quant}


class PrototypeTrainer:
    """Adam on a prototype net, one step per call (the lr schedule is the caller's)."""

    def __init__(self, net: PrototypeNet, params: PrototypeParams) -> None:
        self.net = net
        self.params = params
        self.optimizer = torch.optim.Adam(net.parameters(), lr=params.proto_lr, betas=params.proto_betas)

    def step(self, targets: torch.Tensor, codes: torch.Tensor,
             labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One Adam step on the loss of ``targets``; returns the prototypes *before* the step
        (detached, as the released ATRDH attacks with them) and the detached losses."""
        self.net.train()
        h = self.net(targets)
        losses = prototype_loss(h, codes, targets, labels, self.params)
        self.optimizer.zero_grad(set_to_none=True)
        losses["proto"].backward()
        self.optimizer.step()
        return h.detach(), {k: v.detach() for k, v in losses.items()}

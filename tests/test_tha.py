"""THA and the shared prototype network: architecture, circle loss, training, the attack."""

import math

import pytest
import torch
from torch import nn

from hashbench import plugins
from hashbench.api.attack import AttackContext
from hashbench.errors import ConfigError
from hashbench.retrieval.prototype import (PrototypeNet, PrototypeParams, build_prototype_net, circle_loss,
                                           load_prototype_net, prototype_loss, prototype_state, sample_targets,
                                           target_candidates)

SMALL = {"proto_hidden": (64, 32)}


def test_prototype_net_layers_follow_the_paper_and_are_parameters():
    net = PrototypeNet(38, 32)
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(38, 4096), (4096, 512), (512, 32)]
    small = PrototypeNet(6, 16, (20, 10))
    out = small(torch.eye(6))
    assert out.shape == (6, 16) and out.abs().max() < 1
    # the only non-linearities are the ReLU after the first layer and the final tanh
    assert [type(m).__name__ for m in small.feature] == ["Linear", "ReLU", "Linear"]


def test_initialisation_draws_from_the_generator_only():
    a = build_prototype_net(6, 16, (20, 10), torch.Generator().manual_seed(3), "cpu")
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    b = build_prototype_net(6, 16, (20, 10), torch.Generator().manual_seed(3), "cpu")
    assert torch.equal(torch.get_rng_state(), global_state)  # the global generator plays no part
    c = build_prototype_net(6, 16, (20, 10), torch.Generator().manual_seed(4), "cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.feature[0].weight, c.feature[0].weight)
    assert a.feature[0].weight.abs().max() <= 1 / math.sqrt(6)  # PyTorch's default bound 1/√fan_in


def test_state_round_trip():
    net = build_prototype_net(5, 8, (12, 6), torch.Generator().manual_seed(0), "cpu")
    again = load_prototype_net(prototype_state(net), "cpu")
    labels = torch.eye(5)
    assert torch.equal(net(labels), again(labels))
    with pytest.raises(ValueError, match="lacks the tensor 'hash.weight'"):
        load_prototype_net({k: v for k, v in prototype_state(net).items() if k != "hash.weight"}, "cpu")


def _hand_circle(s_p, s_n, gamma=1.0):
    lse = lambda xs: math.log(sum(math.exp(x) for x in xs))
    return lse([gamma * max(s + 2, 0) * s for s in s_n]) + lse([-gamma * max(2 - s, 0) * s for s in s_p])


def test_circle_loss_matches_hand_computation_with_and_without_the_mask():
    h = torch.tensor([[0.5, -0.5], [1.0, 1.0]])
    codes = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = (h @ codes.T / 2).tolist()  # [[.5, 0, -.5], [0, 1, 0]]
    # positives: row 0 → items 0, 2; row 1 → items 1, 2
    full = _hand_circle([s[0][0], s[0][2], s[1][1], s[1][2]], [s[0][1], s[1][0]])
    params = PrototypeParams(triangular_mask=False)
    assert float(circle_loss(h, codes, targets, labels, params)) == pytest.approx(full, rel=1e-6)
    # the released code keeps only j > i: row 0 → items 1, 2; row 1 → item 2
    masked = _hand_circle([s[0][2], s[1][2]], [s[0][1]])
    assert float(circle_loss(h, codes, targets, labels, PrototypeParams())) == pytest.approx(masked, rel=1e-6)
    soft = float(circle_loss(h, codes, targets, labels, PrototypeParams(circle_softplus=True)))
    assert soft == pytest.approx(math.log1p(math.exp(masked)), rel=1e-6)


def test_prototype_loss_adds_the_quantisation_per_item():
    h = torch.tensor([[0.5, -0.5], [0.9, 0.1]])
    codes = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    params = PrototypeParams(proto_quantization=0.5)
    losses = prototype_loss(h, codes, targets, labels, params)
    quant = (0.25 + 0.25 + 0.01 + 0.81) / 2  # Σ(sign h − h)² / b
    assert float(losses["proto_quant"]) == pytest.approx(0.5 * quant)
    assert float(losses["circle"]) == pytest.approx(float(circle_loss(h, codes, targets, labels, params)) / 2)
    assert float(losses["proto"]) == pytest.approx(float(losses["circle"] + losses["proto_quant"]))


def test_target_candidates_are_the_distinct_labelled_vectors():
    labels = torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 0, 1], [0, 1, 0]])
    cands = target_candidates(labels)
    assert cands.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
    drawn = sample_targets(cands, 50, torch.Generator().manual_seed(0))
    assert drawn.shape == (50, 3) and {tuple(r) for r in drawn.tolist()} == {(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)}
    with pytest.raises(ValueError, match="no labelled item"):
        target_candidates(torch.zeros(3, 2))


def test_invalid_prototype_parameters_are_rejected():
    with pytest.raises(ConfigError, match="proto_hidden"):
        plugins.attacks.get("tha").from_params({"proto_hidden": [0, 5]})
    with pytest.raises(ConfigError, match="betas must lie in"):
        plugins.attacks.get("tha").from_params({"proto_betas": [0.5, 1.5]})
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        plugins.attacks.get("tha").from_params({"steps_per_epoch": 0})


def test_defaults_are_the_papers():
    p = plugins.attacks.create("tha", {}).params
    assert (p.epsilon, p.step_size, p.iterations, p.random_start, p.alpha_schedule) == (
        8 / 255, 1 / 255, 100, False, "proportional")
    assert (p.epochs, p.steps_per_epoch, p.proto_batch_size, p.proto_lr, p.proto_betas) == (
        100, 300, 32, 1e-4, (0.5, 0.999))
    assert (p.proto_hidden, p.circle_gamma, p.proto_quantization, p.triangular_mask) == ((4096, 512), 1.0, 1e-4, True)
    assert plugins.attacks.get("tha").targeted


class Toy(nn.Module):
    """A fixed random linear hash model on 3×4×4 images."""

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(48, bits, generator=torch.Generator().manual_seed(0)), requires_grad=False)

    def forward(self, x, alpha=1.0):
        return torch.tanh(alpha * (x.flatten(1) - 0.5) @ self.w)


def _context(bits=8, seed=0):
    """Four classes; class c's training codes are the class code with a few random flips.

    Every bit splits the classes 2/2: a bit that all classes share carries no information, and
    the circle loss (rightly) does not pull prototypes towards it.
    """
    g = torch.Generator().manual_seed(7)
    column = torch.tensor([1.0, 1.0, -1.0, -1.0])
    class_codes = torch.stack([column[torch.randperm(4, generator=g)] for _ in range(bits)], dim=1)
    labels = torch.eye(4).repeat_interleave(10, dim=0)
    flips = torch.where(torch.rand(40, bits, generator=g) < 0.1, -1.0, 1.0)
    codes = class_codes.repeat_interleave(10, dim=0) * flips
    ctx = AttackContext(db_codes=codes, db_labels=labels, train_codes=codes, train_labels=labels,
                        epsilon=8 / 255, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed))
    return ctx, class_codes


def test_prepare_learns_the_class_codes_and_is_deterministic():
    params = {**SMALL, "epochs": 4, "steps_per_epoch": 50, "proto_batch_size": 8, "proto_lr": 1e-3}
    attack = plugins.attacks.create("tha", params)
    ctx, class_codes = _context()
    state = attack.prepare(Toy(), ctx)
    history = state["history.loss"]
    assert history.shape == (4,) and history[-1] < history[0]
    net = load_prototype_net({k: v for k, v in state.items() if k != "history.loss"}, "cpu")
    with torch.no_grad():
        assert torch.equal(torch.sign(net(torch.eye(4))), class_codes)
    again = plugins.attacks.create("tha", params).prepare(Toy(), _context()[0])
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_perturb_moves_codes_towards_the_prototype_within_budget():
    attack = plugins.attacks.create("tha", {**SMALL, "epochs": 2, "steps_per_epoch": 50, "proto_batch_size": 8,
                                                "proto_lr": 1e-3, "iterations": 40})
    ctx, class_codes = _context()
    ctx.state = attack.prepare(Toy(), ctx)
    model = Toy()
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    target = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0, 1])]
    x_adv = attack.perturb(model, x, target, target, ctx)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    net = load_prototype_net({k: v for k, v in ctx.state.items() if k != "history.loss"}, "cpu")
    with torch.no_grad():
        proto = torch.sign(net(target))
        assert (model(x_adv) * proto).mean() > (model(x) * proto).mean() + 0.05
    with pytest.raises(ValueError, match="targeted attack"):
        attack.perturb(model, x, target, None, ctx)

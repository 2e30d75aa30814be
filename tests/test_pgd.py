import pytest
import torch
from torch import nn

from hashbench.retrieval.pgd import PGDConfig, alpha_at, pgd


class Linear(nn.Module):
    def __init__(self, k=8, d=3 * 4 * 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(d, k, generator=g))

    def forward(self, x, alpha=1.0):
        return torch.tanh(alpha * x.flatten(1) @ self.w)


def test_proportional_schedule_has_ten_segments():
    alphas = [alpha_at("proportional", t, 100) for t in range(100)]
    assert alphas[0] == 0.1 and alphas[49] == 0.1 and alphas[50] == 0.2 and alphas[99] == 1.0
    assert alpha_at("none", 5, 10) == 1.0
    with pytest.raises(ValueError, match="unknown alpha schedule"):
        alpha_at("cosine", 0, 10)


def test_stays_in_ball_and_unit_box():
    torch.manual_seed(0)
    model = Linear()
    x = torch.rand(5, 3, 4, 4)
    code = torch.sign(torch.randn(5, 8))
    cfg = PGDConfig(epsilon=8 / 255, step_size=2 / 255, iterations=10, random_start=True)
    x_adv = pgd(model, x, code, cfg, generator=torch.Generator().manual_seed(1))
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert model.w.grad is None  # parameters never accumulate gradients


def test_untargeted_lowers_and_targeted_raises_agreement():
    model = Linear()
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    code = torch.sign(torch.randn(6, 8, generator=torch.Generator().manual_seed(3)))
    cfg = PGDConfig(epsilon=0.1, step_size=0.01, iterations=20, random_start=False)
    before = (model(x) * code).mean()
    away = (model(pgd(model, x, code, cfg, targeted=False)) * code).mean()
    toward = (model(pgd(model, x, code, cfg, targeted=True)) * code).mean()
    assert away < before - 0.05 and toward > before + 0.05


def test_deterministic_for_a_seed():
    model = Linear()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    code = torch.ones(4, 8)
    cfg = PGDConfig(epsilon=0.05, step_size=0.01, iterations=5, random_start=True)
    a = pgd(model, x, code, cfg, generator=torch.Generator().manual_seed(9))
    b = pgd(model, x, code, cfg, generator=torch.Generator().manual_seed(9))
    c = pgd(model, x, code, cfg, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sgd_and_adam_steps_match_a_hand_rolled_loop_with_projection():
    from hashbench.retrieval.pgd import minimise, project

    model = Linear()
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    code = torch.sign(torch.randn(3, 8, generator=torch.Generator().manual_seed(6)))

    def objective(outputs, x_adv):
        return (outputs * code).sum() + 0.5 * (x_adv - x).pow(2).sum()

    for optimizer in ("sgd", "adam"):
        cfg = PGDConfig(epsilon=0.03, step_size=0.05, iterations=4, random_start=False,
                        alpha_schedule="proportional", optimizer=optimizer, momentum=0.9)
        # the same updates written out by hand: torch.optim on the image, projection after each step
        var = x.clone().requires_grad_(True)
        opt = torch.optim.SGD([var], lr=0.05, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam([var], lr=0.05)
        for t in range(4):
            opt.zero_grad()
            objective(model(var, alpha_at("proportional", t, 4)), var).backward()
            opt.step()
            with torch.no_grad():
                var.copy_(project(var, x, 0.03))
        model.w.grad = None
        out = minimise(model, x, objective, cfg)
        assert torch.allclose(out, var.detach(), atol=1e-7), optimizer
        assert (out - x).abs().max() <= 0.03 + 1e-7 and out.min() >= 0 and out.max() <= 1
        assert model.w.grad is None


def test_optimisers_lower_the_objective():
    from hashbench.retrieval.pgd import minimise

    model = Linear()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    code = torch.sign(torch.randn(4, 8, generator=torch.Generator().manual_seed(8)))

    def objective(outputs, _x_adv):
        return (outputs * code).mean()

    with torch.no_grad():
        before = float(objective(model(x), x))
    for optimizer, lr in (("sign", 0.01), ("sgd", 1.0), ("adam", 0.01)):
        cfg = PGDConfig(epsilon=0.1, step_size=lr, iterations=15, random_start=False, optimizer=optimizer)
        x_adv = minimise(model, x, objective, cfg)
        with torch.no_grad():
            after = float(objective(model(x_adv), x))
        assert after < before - 0.05, optimizer


def test_pgd_equals_minimise_on_the_inner_product():
    from hashbench.retrieval.pgd import inner_product_loss, minimise

    model = Linear()
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(11))
    code = torch.sign(torch.randn(2, 8, generator=torch.Generator().manual_seed(12)))
    cfg = PGDConfig(epsilon=0.05, step_size=0.01, iterations=6, random_start=True, alpha_schedule="bai")
    loss = inner_product_loss(True)
    a = pgd(model, x, code, cfg, targeted=True, generator=torch.Generator().manual_seed(3))
    b = minimise(model, x, lambda out, _x: loss(out, code), cfg, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"optimizer": "rmsprop"}, "unknown PGD optimizer"),
        ({"momentum": 1.0}, "momentum must be in"),
        ({"betas": (0.9, 1.0)}, "betas must be"),
        ({"step_size": 0.0}, "step_size must be > 0"),
        ({"iterations": -1}, "iterations must be a non-negative integer"),
        ({"epsilon": -0.1}, "epsilon must be >= 0"),
        ({"alpha_schedule": "cosine"}, "unknown alpha schedule"),
    ],
)
def test_config_rejects_invalid_values(changes, message):
    values = {"epsilon": 0.1, "step_size": 0.01, "iterations": 3, **changes}
    with pytest.raises(ValueError, match=message):
        PGDConfig(**values)

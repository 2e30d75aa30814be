import pytest
import torch
from torch import nn

from hashbench.pgd import PGDConfig, alpha_at, pgd


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

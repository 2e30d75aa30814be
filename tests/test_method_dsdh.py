"""DSDH and DSDH-C: losses, one DCC sweep and the SWD quantisation term against hand computations."""

import math

import pytest
import torch

from hashbench import plugins
from hashbench.errors import ConfigError
from hashbench.methods.dsdh_c import swd_coordinate_loss

LABELS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
BATCH_U = torch.tensor([[0.5, 0.5, 0.5, 0.5], [-0.5, 0.5, -0.5, 0.5]])
# Discrete codes B (N×K) and classifier W (K×C) as a DCC update would leave them.
CODES = torch.tensor([[1.0, 1, 1, 1], [-1, 1, -1, 1], [1, -1, 1, -1]])
CLASSIFIER = torch.tensor([[0.5, 0.0], [0.0, 0.5], [0.25, 0.0], [0.0, 0.25]])


def _tiny_dsdh(name: str = "dsdh", **params):
    method = plugins.methods.create(name, {"mu": 2.0, "nu": 0.5, **params})
    method.setup(3, 4, LABELS, "cpu")
    method.bank.u[2] = torch.tensor([0.5, -0.5, 0.5, -0.5])  # an item seen in an earlier batch
    method.codes, method.classifier = CODES.clone(), CLASSIFIER.clone()
    return method


def _hand_dsdh_loss() -> float:
    # θ = ½ u·U with U = [[.5,.5,.5,.5], [-.5,.5,-.5,.5], [.5,-.5,.5,-.5]] (rows 0, 1 = the batch):
    #   row 0: θ = [0.5, 0, 0],  s = [1, 0, 1];   row 1: θ = [0, 0.5, -0.5], s = [0, 1, 1]
    # ℓ(θ, s) = log(1+e^{-|θ|}) + max(θ, 0) − sθ:
    #   ℓ(.5, 1) = log(1+e^{-.5});  ℓ(0, ·) = log 2;  ℓ(−.5, 1) = log(1+e^{-.5}) + .5
    likelihood = (3 * math.log1p(math.exp(-0.5)) + 0.5 + 3 * math.log(2)) / 6
    # B[idx] W: row 0 [1,1,1,1]W = [.75, .75] vs y [1, 0] → squares .0625 + .5625
    #           row 1 [-1,1,-1,1]W = [-.75, .75] vs y [0, 1] → squares .5625 + .0625
    classification = 1.25 / 4
    regulariser = (0.25 + 0.25 + 0.0625 + 0.0625) / 8  # mean(W²) over 4×2 entries
    return likelihood + 2.0 * classification + 0.5 * regulariser  # μ = 2, ν = 0.5


def test_dsdh_loss_matches_hand_computation_and_updates_the_bank():
    method = _tiny_dsdh()
    loss = method.loss(BATCH_U, LABELS[:2], torch.tensor([0, 1]))
    assert float(loss) == pytest.approx(_hand_dsdh_loss(), rel=1e-6)
    assert torch.equal(method.bank.u[:2], BATCH_U)  # the batch rows were written before the loss
    assert torch.equal(method.bank.u[2], torch.tensor([0.5, -0.5, 0.5, -0.5]))  # other rows untouched


def test_dsdh_gradient_flows_through_the_likelihood_only():
    method = _tiny_dsdh()
    u = BATCH_U.clone().requires_grad_(True)
    method.loss(u, LABELS[:2], torch.tensor([0, 1])).backward()
    # dℓ/dθ = σ(θ) − s and θ_ij = ½ u_i·U_j (the bank is detached), mean over 2×3 pairs:
    # row 0: θ = [.5, 0, 0], s = [1, 0, 1] → ½·(1/6)·[(σ(.5)−1)U_0 + ½U_1 − ½U_2]
    sigma = 1 / (1 + math.exp(-0.5))
    bank = method.bank.u
    expected = (0.5 / 6) * ((sigma - 1) * bank[0] + 0.5 * bank[1] - 0.5 * bank[2])
    torch.testing.assert_close(u.grad[0], expected, rtol=1e-5, atol=1e-7)


# One DCC sweep on N = 4 items, K = 3 bits, C = 2 classes with μ = ν = η = 1.
DCC_LABELS = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
DCC_U = torch.tensor([[0.1, 0.3, -0.5], [-0.9, 0.2, 0.4], [0.2, -0.1, 0.3], [0.5, 0.6, -0.2]])
# Orthogonal columns, so BᵀB + (ν/μ)I = 5I and the W-step is W = BᵀY / 5.
DCC_B0 = torch.tensor([[1.0, 1, 1], [1, -1, 1], [1, 1, -1], [1, -1, -1]])


def _dcc_method(**params):
    method = plugins.methods.create("dsdh", {"eta": 1.0, **params})
    method.setup(4, 3, DCC_LABELS, "cpu")
    method.bank.preinstall(DCC_U)
    return method


def test_one_dcc_sweep_matches_hand_computation():
    method = _dcc_method()
    before = (method.codes.clone(), method.classifier.clone())
    codes, classifier = method.dcc_sweep(DCC_B0)
    # W = BᵀY/5: column sums of B against Y's columns [1,1,0,1] and [0,0,1,1].
    w = torch.tensor([[3.0, 2.0], [-1.0, 0.0], [1.0, -2.0]]) / 5
    torch.testing.assert_close(classifier, w)
    # P = YWᵀ + U = [[.7,.1,-.3], [-.3,0,.6], [.6,-.1,-.1], [1.5,.4,-.4]]; off-diagonal WWᵀ:
    # g01 = −.12, g02 = −.04, g12 = −.04.  Bit k: q = P_k − Σ_{j≠k} g_jk·B_j with the bits already updated.
    #   bit 0: q = P₀ − (−.12·[1,−1,1,−1] − .04·[1,1,−1,−1]) = [.86, −.38, .68, 1.34]   → [ 1, −1,  1,  1]
    #   bit 1: q = P₁ − (−.12·[1,−1,1,1] − .04·[1,1,−1,−1])  = [.26, −.08, −.02, .48]   → [ 1, −1, −1,  1]
    #   bit 2: q = P₂ − (−.04·[1,−1,1,1] − .04·[1,−1,−1,1])  = [−.22, .52, −.1, −.32]   → [−1,  1, −1, −1]
    expected = torch.tensor([[1.0, 1, -1], [-1, -1, 1], [1, -1, -1], [1, 1, -1]])
    assert torch.equal(codes, expected)
    assert torch.equal(method.codes, before[0]) and torch.equal(method.classifier, before[1])  # pure
    assert torch.equal(DCC_B0[:, 0], torch.ones(4))  # the input codes were not modified in place
    # F(B₁, W) = ‖Y − B₁W‖² + ‖W‖² + ‖B₁ − U‖² = 4.44 + 0.76 + 7.55
    assert method.dcc_objective(codes, classifier) == pytest.approx(12.75, rel=1e-5)
    assert method.dcc_objective(codes, classifier) <= method.dcc_objective(DCC_B0, classifier)
    assert method.dcc_objective(DCC_B0, classifier) <= method.dcc_objective(DCC_B0, torch.zeros(3, 2))


def test_dcc_objective_never_increases():
    gen = torch.Generator().manual_seed(7)
    labels = (torch.rand(20, 3, generator=gen) < 0.4).float()
    method = plugins.methods.create("dsdh", {"eta": 0.5, "nu": 0.3, "mu": 1.5})
    method.setup(20, 6, labels, "cpu")
    method.bank.preinstall(torch.rand(20, 6, generator=gen) * 2 - 1)
    codes = torch.randint(0, 2, (20, 6), generator=gen).float() * 2 - 1
    previous = method.dcc_objective(codes, torch.zeros(6, 3))
    for _ in range(5):
        new_codes, classifier = method.dcc_sweep(codes)
        after_w = method.dcc_objective(codes, classifier)
        after_b = method.dcc_objective(new_codes, classifier)
        assert after_w <= previous + 1e-4 and after_b <= after_w + 1e-4
        assert set(new_codes.unique().tolist()) <= {-1.0, 1.0}
        codes, previous = new_codes, after_b


def test_epoch_start_runs_dcc_iter_sweeps_from_the_preinstalled_bank():
    method = _dcc_method(dcc_iter=3)
    method.on_epoch_start(0)
    codes = torch.sign(DCC_U)  # the first DCC starts from sign(U) of the (preinstalled) bank
    for _ in range(3):
        codes, classifier = method.dcc_sweep(codes)
    assert torch.equal(method.codes, codes)
    torch.testing.assert_close(method.classifier, classifier)
    assert method.state_tensors() == {}  # B and W are rebuilt per run, not stored with the model


def test_clean_training_first_epoch_gives_zero_codes_and_classifier():
    # Spec §1.3: the bank starts at zero, so the first DCC yields B = 0 and W = 0 and the
    # classification term is mean(y²).
    method = plugins.methods.create("dsdh", {})
    method.setup(3, 4, LABELS, "cpu")
    method.on_epoch_start(0)
    assert not method.codes.any() and not method.classifier.any()
    loss = method.loss(torch.zeros(2, 4), LABELS[:2], torch.tensor([0, 1]))
    assert float(loss) == pytest.approx(math.log(2) + 0.5, rel=1e-6)  # ℓ(0, s) = log 2; mean(y²) = ½
    # the second epoch starts from the current codes (still 0), not again from the bank
    method.bank.u.copy_(torch.tensor([[0.2, -0.1, 0.3, -0.4]]).expand(3, 4))
    method.on_epoch_start(1)
    # sweep 1 has W = 0, so B = sign(ηU/μ); with η = 55 the later sweeps keep it
    assert torch.equal(method.codes, torch.sign(method.bank.u))


def test_swd_coordinate_loss_matches_hand_computation():
    u = torch.tensor([[0.5, -0.2], [-0.7, 0.9], [0.1, 0.3]], requires_grad=True)
    target = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]])
    loss = swd_coordinate_loss(u, target)
    # bit 0: sorted u [−.7, .1, .5] vs sorted target [−1, 1, 1] → squares .09 + .81 + .25
    # bit 1: sorted u [−.2, .3, .9] vs sorted target [−1, −1, 1] → squares .64 + 1.69 + .01
    assert loss.item() == pytest.approx((1.15 + 2.34) / 6, rel=1e-6)
    loss.backward()
    # each value is matched to the target of its rank: d/du = 2(u − t_rank)/(bK)
    expected = torch.tensor([[2 * (0.5 - 1), 2 * (-0.2 + 1)], [2 * (-0.7 + 1), 2 * (0.9 - 1)], [2 * (0.1 - 1), 2 * (0.3 + 1)]]) / 6
    torch.testing.assert_close(u.grad, expected)
    with pytest.raises(ValueError, match="b×K"):
        swd_coordinate_loss(u.detach(), target[:2])


def test_dsdh_c_adds_weighted_swd_term_with_seeded_targets():
    torch.manual_seed(11)
    method = _tiny_dsdh("dsdh-c", quantization_alpha=0.3)
    state = method.generator.get_state()
    loss = method.loss(BATCH_U, LABELS[:2], torch.tensor([0, 1]))
    method.generator.set_state(state)
    target = method.draw_target(BATCH_U.shape, BATCH_U)
    assert set(target.unique().tolist()) <= {-1.0, 1.0}
    expected = _hand_dsdh_loss() + 0.3 * float(swd_coordinate_loss(BATCH_U, target))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert torch.equal(method.bank.u[:2], BATCH_U)


def test_dsdh_c_targets_are_balanced_coins():
    torch.manual_seed(0)
    method = _tiny_dsdh("dsdh-c")
    draws = method.draw_target(torch.Size([4000, 8]), BATCH_U)
    assert draws.abs().eq(1).all()
    assert abs(float(draws.mean())) < 0.05  # P(+1) = ½: the mean of 32,000 coins is within ±0.05


def test_dsdh_c_same_seed_same_losses_other_seed_other_targets():
    def losses(seed: int) -> list[float]:
        torch.manual_seed(seed)
        method = _tiny_dsdh("dsdh-c")
        return [float(method.loss(BATCH_U * scale, LABELS[:2], torch.tensor([0, 1]))) for scale in (1.0, 0.8, 0.6)]

    assert losses(5) == losses(5)
    torch.manual_seed(5)
    first = _tiny_dsdh("dsdh-c").draw_target(torch.Size([16, 8]), BATCH_U)
    torch.manual_seed(6)
    second = _tiny_dsdh("dsdh-c").draw_target(torch.Size([16, 8]), BATCH_U)
    assert not torch.equal(first, second)


def test_defaults_are_the_papers():
    p = plugins.methods.create("dsdh", {}).params
    assert (p.mu, p.nu, p.eta, p.dcc_iter) == (1.0, 1.0, 55.0, 10)
    assert (p.epochs, p.batch_size, p.lr, p.momentum, p.weight_decay) == (100, 64, 0.01, 0.9, 5e-4)
    c = plugins.methods.create("dsdh-c", {}).params
    assert (c.mu, c.nu, c.eta, c.dcc_iter, c.quantization_alpha) == (1.0, 1.0, 55.0, 10, 0.1)


@pytest.mark.parametrize(
    "name, params, key",
    [
        ("dsdh", {"mu": 0}, "mu"),
        ("dsdh", {"nu": -1}, "nu"),
        ("dsdh", {"eta": -0.5}, "eta"),
        ("dsdh", {"dcc_iter": 0}, "dcc_iter"),
        ("dsdh", {"sweeps": 3}, "sweeps"),
        ("dsdh-c", {"quantization_alpha": -0.1}, "quantization_alpha"),
        ("dsdh-c", {"dcc_iter": 1.5}, "dcc_iter"),
    ],
)
def test_bad_parameters_are_rejected(name, params, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        plugins.methods.create(name, params)

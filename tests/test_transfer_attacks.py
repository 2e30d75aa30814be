"""The transfer optimisers of the PGD engine (MI, NI, SI, DI, VMI) on hand-made tensors, their attack
plugins (bim, mi-fgsm, di-fgsm, ni-fgsm, si-ni-fgsm, vmi-fgsm) and SDHA-t."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.mainstay import mainstay_loss
from attacks.sdha_t import targeted_distance, targeted_objective
from attacks.transfer import guide_codes
from hashbench import plugins
from hashbench.api.attack import AttackContext
from hashbench.errors import ConfigError
from hashbench.retrieval.codes import center_codes, to_binary
from hashbench.retrieval.pgd import PGDConfig, input_diversity, input_gradient, minimise, pgd

TRANSFER = ("bim", "mi-fgsm", "di-fgsm", "ni-fgsm", "si-ni-fgsm", "vmi-fgsm")
NEW = (*TRANSFER, "sdha-t")
EPS = 8 / 255
STEP = 0.01


class Flat(nn.Module):
    """The identity on pixels: the objective sees the image itself."""

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return x.flatten(1)


# Two pixels of one image at 0.5; f(x) = ½ Σ (x − t)², so ∇f = x − t.  Pixel A's target is 0.9 steps
# away, pixel B's 10 steps away.
X0 = torch.full((1, 1, 1, 2), 0.5, dtype=torch.float64)
TARGET = torch.tensor([[0.5 + 0.9 * STEP, 0.5 + 10 * STEP]], dtype=torch.float64)


def quadratic(outputs: torch.Tensor, _x_adv: torch.Tensor) -> torch.Tensor:
    return 0.5 * (outputs - TARGET).square().sum()


def run(iterations: int, objective=quadratic, **options) -> torch.Tensor:
    config = PGDConfig(0.1, STEP, iterations, random_start=False, **options)
    return minimise(Flat(), X0, objective, config, generator=torch.Generator().manual_seed(0))


# --- the engine's optimisers on hand-made tensors ----------------------------------------------

def test_momentum_keeps_the_accumulated_direction_on_the_second_step():
    # step 1: ∇ = (−0.9, −10)·η, both pixels step up to 0.5 + η
    # step 2: ∇ = (+0.1, −9)·η.  Plain signed steps send pixel A back down to 0.5; MI's
    # g = ĝ₁/mean|ĝ₁| + ĝ₂/mean|ĝ₂| = (−0.9/5.45 + 0.1/4.55, …) = (−0.1432, −3.8129) keeps it going up
    g1 = torch.tensor([-0.9, -10.0]) / 5.45
    g2 = g1 + torch.tensor([0.1, -9.0]) / 4.55
    assert g2[0] == pytest.approx(-0.14316, abs=1e-5)
    plain = run(2).flatten()
    torch.testing.assert_close(plain, torch.tensor([0.5, 0.5 + 2 * STEP], dtype=torch.float64))
    momentum = run(2, momentum_decay=1.0).flatten()
    torch.testing.assert_close(momentum, torch.tensor([0.5 + 2 * STEP, 0.5 + 2 * STEP], dtype=torch.float64))
    # a small decay forgets the first step: g₂ = 0.01·g₁ + ĝ₂/mean|ĝ₂| has a positive first entry
    forgetful = run(2, momentum_decay=0.01).flatten()
    torch.testing.assert_close(forgetful, plain)


def test_nesterov_takes_the_gradient_at_the_look_ahead_point():
    points = []

    def recording(outputs: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        points.append(x_adv.detach().flatten().clone())
        return quadratic(outputs, x_adv)

    run(2, objective=recording, momentum_decay=1.0, nesterov=True)
    g1 = torch.tensor([-0.9, -10.0], dtype=torch.float64) / 5.45  # the normalised first gradient
    x1 = torch.tensor([0.5 + STEP, 0.5 + STEP], dtype=torch.float64)
    assert len(points) == 2
    torch.testing.assert_close(points[0], X0.flatten())
    torch.testing.assert_close(points[1], x1 - STEP * 1.0 * g1)  # x₁ − η·μ·g₁, ahead along the descent


def test_scale_invariance_averages_the_gradient_over_the_scaled_copies():
    point = torch.tensor([[[[0.2, 0.8, 0.4]]]])
    c = torch.tensor([[1.0, -2.0, 0.5]])
    config = PGDConfig(EPS, STEP, 1, scales=3)
    # linear: ∇ₓ c·(x/2^i) = c/2^i, mean over i < 3
    linear = input_gradient(Flat(), lambda out, _x: (out * c).sum(), point, 1.0, config)
    torch.testing.assert_close(linear.flatten(1), c * (1 + 1 / 2 + 1 / 4) / 3)
    # quadratic: ∇ₓ ½|x/2^i|² = x/4^i: the copies are scaled inputs, not scaled outputs
    square = input_gradient(Flat(), lambda out, _x: 0.5 * out.square().sum(), point, 1.0, config)
    torch.testing.assert_close(square, point * (1 + 1 / 4 + 1 / 16) / 3)
    # one scale is the plain gradient
    plain = input_gradient(Flat(), lambda out, _x: 0.5 * out.square().sum(), point, 1.0, PGDConfig(EPS, STEP, 1))
    torch.testing.assert_close(plain, point)


def test_input_diversity_is_the_identity_at_probability_zero_and_draws_nothing():
    x = torch.rand(2, 3, 16, 16)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    assert input_diversity(x, 0.0, 0.9, generator) is x
    assert torch.equal(generator.get_state(), state)
    # DI off in the engine is exactly the plain signed loop
    torch.testing.assert_close(run(3, diversity_prob=0.0), run(3))


def test_input_diversity_shrinks_and_pads_keeping_the_shape():
    x = torch.ones(2, 3, 20, 20)
    sizes, offsets = set(), set()
    for seed in range(40):
        out = input_diversity(x, 1.0, 0.9, torch.Generator().manual_seed(seed))
        assert out.shape == x.shape
        ones = out[0, 0] > 0.5
        rows, cols = ones.any(1).nonzero().flatten(), ones.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert h == w and h in (18, 19)  # ⌊0.9·20⌋ ≤ side < 20
        assert int(ones.sum()) == h * w and torch.equal(out[1], out[0])  # one rectangle, shared by the batch
        inside = out[:, :, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        torch.testing.assert_close(inside, torch.ones_like(inside))  # bilinear of a constant
        assert float(out.sum()) == pytest.approx(2 * 3 * h * w)  # zeros elsewhere
        sizes.add(h)
        offsets.add((int(rows[0]), int(cols[0])))
    assert sizes == {18, 19} and len(offsets) > 3
    same = [input_diversity(x * 0.5, 1.0, 0.9, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*same)
    # probability 0.5: some calls transform, some return the input
    generator = torch.Generator().manual_seed(0)
    kept = sum(input_diversity(x, 0.5, 0.9, generator) is x for _ in range(40))
    assert 5 < kept < 35
    # nothing to shrink to (⌊1.0·H⌋ = H): unchanged
    assert input_diversity(x, 1.0, 1.0, torch.Generator().manual_seed(0)) is x


def test_variance_tuning_adds_the_neighbourhood_gradient_variance():
    # a linear objective has the same gradient everywhere: no variance, VMI is MI bit for bit
    c = torch.tensor([[0.25, -0.5]], dtype=torch.float64)

    def linear(out, _x):
        return (out * c).sum()

    torch.testing.assert_close(run(3, objective=linear, momentum_decay=1.0, variance_samples=5),
                               run(3, objective=linear, momentum_decay=1.0), rtol=0, atol=0)
    # quadratic: ∇ at x + r is x + r − t, so v₁ = mean_k r_k, drawn as U(−βε, βε) from the generator
    got = run(2, momentum_decay=1.0, variance_samples=3, variance_bound=2.0).flatten()
    generator = torch.Generator().manual_seed(0)
    noise = [(2 * torch.rand(X0.shape, generator=generator) - 1).to(torch.float64).flatten() * 2.0 * 0.1
             for _ in range(3)]
    v1 = sum(noise) / 3
    grad1 = torch.tensor([-0.9, -10.0], dtype=torch.float64) * STEP
    g1 = grad1 / grad1.abs().mean()
    x1 = X0.flatten() - STEP * g1.sign()
    grad2 = x1 - TARGET.flatten()
    g2 = g1 + (grad2 + v1) / (grad2 + v1).abs().mean()
    torch.testing.assert_close(got, (x1 - STEP * g2.sign()).clamp(0.4, 0.6))


def test_a_zero_gradient_does_not_move_the_image_or_make_nans():
    out = run(3, objective=lambda o, _x: 0.0 * o.sum(), momentum_decay=1.0, variance_samples=2)
    assert torch.isfinite(out).all() and torch.equal(out, X0)


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "adam", "momentum_decay": 1.0}, "need optimizer='sign', not 'adam'"),
    ({"optimizer": "sgd", "scales": 2}, "need optimizer='sign', not 'sgd'"),
    ({"scales": 0}, "scales must be an integer >= 1"),
    ({"variance_samples": -1}, "variance_samples must be an integer >= 0"),
    ({"variance_samples": 1.5}, "variance_samples must be an integer >= 0"),
    ({"momentum_decay": float("inf")}, "momentum_decay must be a finite number >= 0"),
    ({"diversity_prob": 1.5}, "diversity_prob must be in [0, 1]"),
    ({"diversity_resize": 0.0}, "diversity_resize must be in (0, 1]"),
    ({"variance_bound": -1.0}, "variance_bound must be a finite number >= 0"),
])
def test_config_rejects_bad_transfer_options(changes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        PGDConfig(EPS, STEP, 3, **changes)


# --- the plugins ---------------------------------------------------------------------------------

class TinyHash(nn.Module):
    """A linear hash model on 3×4×4 images: tanh(α·Wx)."""

    def __init__(self, bits: int = 12) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(48, bits)

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return torch.tanh(alpha * self.linear(x.flatten(1) - 0.5) * 4)


def tiny_setting(seed: int = 0):
    rng = torch.Generator().manual_seed(seed)
    model = TinyHash().eval()
    x = torch.rand(6, 3, 4, 4, generator=rng)
    labels = torch.eye(3)[torch.arange(6) % 3]
    train = torch.rand(30, 3, 4, 4, generator=rng)
    train_labels = torch.eye(3)[torch.arange(30) % 3]
    with torch.no_grad():
        train_codes = to_binary(model(train)).float()
    ctx = AttackContext(train_codes, train_labels, train_codes, train_labels, EPS, torch.device("cpu"),
                        torch.Generator().manual_seed(1))
    return model, x, labels, ctx


def test_the_new_attacks_are_registered_with_their_papers():
    papers = {"bim": "Kurakin", "mi-fgsm": "Dong", "di-fgsm": "Xie", "ni-fgsm": "Lin", "si-ni-fgsm": "Lin",
              "vmi-fgsm": "Wang, He", "sdha-t": "Lu, Chen"}
    for name, author in papers.items():
        cls = plugins.attacks.get(name)
        assert cls.paper.startswith(author) and "Semantic-Aware Adversarial Training" in cls.paper
        assert cls.description and cls.targeted is (name == "sdha-t")


def test_defaults_are_saats_generators():
    p = {name: plugins.attacks.create(name).params for name in NEW}
    for name in TRANSFER:
        assert (p[name].epsilon, p[name].step_size, p[name].iterations, p[name].alpha_schedule, p[name].guide,
                p[name].margin, p[name].batch_size) == (EPS, 1 / 255, 100, "proportional", "mainstay", 0.5, 128)
        assert p[name].random_start is (name == "di-fgsm")
    assert (p["di-fgsm"].decay, p["di-fgsm"].diversity_prob, p["di-fgsm"].resize) == (0.0, 0.5, 0.9)
    assert p["mi-fgsm"].decay == p["ni-fgsm"].decay == p["si-ni-fgsm"].decay == p["vmi-fgsm"].decay == 1.0
    assert p["si-ni-fgsm"].scales == 5 and (p["vmi-fgsm"].samples, p["vmi-fgsm"].bound) == (5, 1.5)
    assert (p["sdha-t"].sigma, p["sdha-t"].z, p["sdha-t"].distance_weight, p["sdha-t"].lr, p["sdha-t"].iterations,
            p["sdha-t"].alpha_schedule) == (10.0, -0.3, 25.0, 0.01, 1500, "proportional")


def test_each_plugin_picks_its_engine_options():
    options = {name: plugins.attacks.create(name).optimizer_options() for name in TRANSFER}
    assert options["bim"] == {}
    assert options["mi-fgsm"] == {"momentum_decay": 1.0}
    assert options["di-fgsm"] == {"momentum_decay": 0.0, "diversity_prob": 0.5, "diversity_resize": 0.9}
    assert options["ni-fgsm"] == {"momentum_decay": 1.0, "nesterov": True}
    assert options["si-ni-fgsm"] == {"momentum_decay": 1.0, "nesterov": True, "scales": 5}
    assert options["vmi-fgsm"] == {"momentum_decay": 1.0, "variance_samples": 5, "variance_bound": 1.5}


@pytest.mark.parametrize("name, values, message", [
    ("bim", {"guide": "anchor"}, "'guide'"),
    ("mi-fgsm", {"decay": -1}, "'decay'"),
    ("di-fgsm", {"diversity_prob": 2}, "'diversity_prob'"),
    ("di-fgsm", {"resize": 0}, "'resize'"),
    ("si-ni-fgsm", {"scales": 0}, "'scales'"),
    ("vmi-fgsm", {"samples": 0}, "'samples'"),
    ("sdha-t", {"betas": [0.9, 1.0]}, "betas must both be in"),
    ("ni-fgsm", {"nesterov": False}, "unknown key 'nesterov'"),
])
def test_bad_parameters_are_refused(name, values, message):
    with pytest.raises(ConfigError, match=message):
        plugins.attacks.create(name, values)


def test_guide_codes_are_mainstay_center_or_the_query_own_code():
    model, x, labels, ctx = tiny_setting()
    torch.testing.assert_close(guide_codes("mainstay", model, x, labels, ctx),
                               center_codes(labels, ctx.train_codes, ctx.train_labels, weighting="saat"))
    torch.testing.assert_close(guide_codes("center", model, x, labels, ctx),
                               center_codes(labels, ctx.train_codes, ctx.train_labels, weighting="cgat"))
    with torch.no_grad():
        own = to_binary(model(x)).float()
    torch.testing.assert_close(guide_codes("own", model, x, labels, ctx), own)


def test_bim_is_pgd_from_the_clean_image_with_the_masked_loss():
    model, x, labels, ctx = tiny_setting()
    attack = plugins.attacks.create("bim", {"iterations": 10})
    got = attack.perturb(model, x, labels, None, ctx)
    codes = center_codes(labels, ctx.train_codes, ctx.train_labels, weighting="saat")
    want = pgd(model, x, codes, PGDConfig(EPS, 1 / 255, 10, False, "proportional"), loss_fn=mainstay_loss(0.5, False))
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", TRANSFER)
@pytest.mark.parametrize("guide", ["mainstay", "center", "own"])
def test_each_optimiser_pushes_the_codes_away_within_the_budget(name, guide):
    model, x, labels, ctx = tiny_setting()
    attack = plugins.attacks.create(name, {"iterations": 20, "guide": guide})
    x_adv = attack.perturb(model, x, labels, None, ctx)
    assert x_adv.shape == x.shape and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    codes = guide_codes(guide, model, x, labels, ctx)
    with torch.no_grad():
        before, after = (model(x) * codes).mean(), (model(x_adv) * codes).mean()
    assert after < before - 0.05
    again = plugins.attacks.create(name, {"iterations": 20, "guide": guide}).perturb(
        model, x, labels, None, tiny_setting()[3])
    assert torch.equal(x_adv, again)  # every draw from ctx.generator


def test_sdha_t_distance_matches_the_elementwise_formula():
    adv = torch.tensor([[0.9, -0.2, 0.0, -1.0], [0.3, 0.5, -0.7, 0.1]])
    codes = torch.tensor([[1.0, -1.0, 1.0, 0.0], [-1.0, -1.0, 1.0, 1.0], [0.0, 1.0, -1.0, -1.0]])
    prod = adv[:, None, :] * codes[None, :, :]
    want = 0.5 * ((adv[:, None, :] - codes[None, :, :]).abs() * torch.sigmoid(-10.0 * prod)).sum(-1)
    torch.testing.assert_close(targeted_distance(adv, codes, 10.0), want)
    # an agreeing bit costs almost nothing, a disagreeing one about |ĥ − r|/2
    assert targeted_distance(torch.tensor([[0.99]]), torch.tensor([[1.0]]), 10.0) < 1e-4
    assert targeted_distance(torch.tensor([[-0.99]]), torch.tensor([[1.0]]), 10.0) == pytest.approx(0.995, abs=1e-3)


def test_sdha_t_objective_weights_far_codes_more_and_skips_an_empty_relevant_set():
    adv = torch.tensor([[0.9, 0.9, 0.9, 0.9], [0.5, -0.5, 0.5, -0.5]])
    codes = torch.tensor([[1.0, 1.0, 1.0, -1.0], [-1.0, -1.0, -1.0, -1.0]])
    relevant = torch.tensor([[True, True], [False, False]])
    out = targeted_objective(adv, codes, relevant, 10.0, -0.3)
    distance = targeted_distance(adv, codes, 10.0)
    weights = torch.tensor([1.0 + 1e-8, 4.0 + 1e-8]) ** 0.3  # Hamming distances 1 and 4 from sign(ĥ₀)
    assert out[0] == pytest.approx(float((weights * distance[0]).mean()), rel=1e-6)
    assert out[1] == 0.0 and torch.isfinite(out).all()


def test_sdha_t_pulls_towards_the_codes_of_the_target_label():
    model, x, labels, ctx = tiny_setting()
    target = labels.roll(1, dims=0)
    attack = plugins.attacks.create("sdha-t", {"iterations": 40})
    with pytest.raises(ValueError, match="is targeted: perturb needs one target label per query"):
        attack.perturb(model, x, labels, None, ctx)
    x_adv = attack.perturb(model, x, labels, target, ctx)
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    relevant = (target @ ctx.train_labels.T > 0).float()
    with torch.no_grad():
        def closeness(images):  # mean agreement with the target's relevant training codes
            return ((model(images) @ ctx.train_codes.T) * relevant).sum() / relevant.sum()
        assert closeness(x_adv) > closeness(x) + 0.2  # 0.38 -> 0.68 of 12 bits

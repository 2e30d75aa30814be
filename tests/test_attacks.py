"""P2P, DHTA, HAG, SDHA and the mainstay attacks: parameters, anchors, losses, and runs on a tiny trained victim."""

import math

import pytest
import torch
from torch import nn

from attacks.hag import hag_loss, hag_mask
from attacks.mainstay import mainstay_loss
from attacks.sdha import ap_weights, surrogate_distance, weighted_distance
from hashbench import plugins
from hashbench.api.attack import AttackContext
from hashbench.data.splits import make_split
from hashbench.errors import ConfigError
from hashbench.models.hash_model import HashModel
from hashbench.retrieval.anchors import anchor_codes, anchor_pool, draw_anchors, vote
from hashbench.retrieval.codes import center_codes, to_binary
from hashbench.retrieval.metrics import map_at_k
from hashbench.retrieval.pgd import alpha_at
from hashbench.retrieval.training import TrainData, run_epochs

MINE = ("p2p", "dhta", "hag", "sdha", "mainstay", "mainstay-t")
UNTARGETED = ("hag", "sdha", "mainstay")
TARGETED = ("p2p", "dhta", "mainstay-t")
EPS = 8 / 255


# --- parameters ----------------------------------------------------------------------------

def test_defaults_are_the_papers():
    p = {name: plugins.attacks.create(name).params for name in MINE}
    assert (p["dhta"].anchors, p["dhta"].iterations, p["dhta"].step_size, p["dhta"].random_start) == (9, 2000, 1 / 255, False)
    assert (p["p2p"].anchors, p["p2p"].iterations, p["p2p"].alpha_schedule) == (1, 2000, "bai")
    assert (p["hag"].lr, p["hag"].momentum, p["hag"].tau, p["hag"].beta, p["hag"].iterations) == (100, 0.9, 0.5, 1.0, 2000)
    assert (p["sdha"].lr, p["sdha"].sigma, p["sdha"].z, p["sdha"].distance_weight, p["sdha"].iterations) == (0.01, 5, 0.5, 25, 1500)
    for name in ("mainstay", "mainstay-t"):
        assert (p[name].margin, p[name].iterations, p[name].step_size, p[name].random_start, p[name].weighting) == (
            0.5, 100, 1 / 255, True, "saat")
    assert all(p[name].epsilon == EPS and p[name].alpha_schedule != "none" for name in MINE)
    assert {n for n in MINE if plugins.attacks.get(n).targeted} == set(TARGETED)


@pytest.mark.parametrize(
    "name, values, message",
    [
        ("dhta", {"anchors": 0}, "'anchors'"),
        ("p2p", {"anchors": 9}, "exactly one anchor"),
        ("dhta", {"alpha_schedule": "cosine"}, "'alpha_schedule'"),
        ("p2p", {"step_size": 0}, "'step_size'"),
        ("hag", {"tau": 1.5}, "'tau'"),
        ("hag", {"lr": -1}, "'lr'"),
        ("hag", {"momentum": 1.0}, "'momentum'"),
        ("sdha", {"sigma": 0}, "'sigma'"),
        ("sdha", {"betas": [0.9, 1.0]}, "betas must both be in"),
        ("sdha", {"iterations": 0}, "'iterations'"),
        ("mainstay", {"margin": -0.1}, "'margin'"),
        ("mainstay-t", {"weighting": "jaccard"}, "'weighting'"),
        ("mainstay", {"epsilon": -1}, "'epsilon'"),
        ("sdha", {"steps": 10}, "unknown key 'steps'"),
    ],
)
def test_invalid_parameters_are_rejected_at_construction(name, values, message):
    with pytest.raises(ConfigError, match=message):
        plugins.attacks.create(name, values)


# --- anchors (P2P, DHTA) ----------------------------------------------------------------------

DB_LABELS = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 1, 0], [1, 1, 0, 1], [1, 1, 0, 0], [1, 1, 0, 0]],
                         dtype=torch.float32)


def test_anchor_pool_is_the_exact_label_match():
    pool = anchor_pool(torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 0]]), DB_LABELS)
    assert pool.tolist() == [[False, False, False, False, True, True], [False, False, True, False, False, False]]


def test_anchor_pool_falls_back_to_the_highest_jaccard_similarity():
    target = torch.tensor([[1.0, 0, 1, 1]])  # {0, 2, 3}
    # Jaccard: {0}: 1/3, {0,1,2}: 2/4, {2}: 1/3, {0,1,3}: 2/4, {0,1}: 1/4, {0,1}: 1/4
    assert anchor_pool(target, DB_LABELS).tolist() == [[False, True, False, True, False, False]]
    with pytest.raises(ValueError, match="shares no class with any database item"):
        anchor_pool(torch.tensor([[0.0, 0, 0, 1]]), DB_LABELS[:3])


def test_dhta_anchor_is_the_component_vote_of_nine_codes():
    codes = torch.tensor([[1, 1, 1, -1], [1, -1, 1, 1], [1, 1, -1, -1], [-1, 1, 1, 1], [1, -1, -1, 1],
                          [-1, -1, 1, -1], [1, 1, 1, -1], [1, -1, -1, -1], [-1, 1, -1, 1], [1, 1, 1, 1]],
                         dtype=torch.float32)
    labels = torch.tensor([[1.0, 0]] * 9 + [[0, 1.0]])
    # all nine items with label [1, 0] are drawn without replacement; bit sums 3, 1, 1, −1
    index, valid = draw_anchors(anchor_pool(torch.tensor([[1.0, 0]]), labels), 9, torch.Generator().manual_seed(0),
                                replace=False)
    assert sorted(index[0].tolist()) == list(range(9)) and bool(valid.all())
    assert vote(codes, index, valid).tolist() == [[1, 1, 1, -1]]
    # with replacement: nine draws from the pool, the anchor is the sign of their sum
    gen = torch.Generator().manual_seed(1)
    anchors = anchor_codes(torch.tensor([[1.0, 0]] * 3), codes, labels, 9, gen)
    index, _ = draw_anchors(anchor_pool(torch.tensor([[1.0, 0]] * 3), labels), 9, torch.Generator().manual_seed(1))
    assert int(index.max()) <= 8 and torch.equal(anchors, torch.sign(codes[index].sum(dim=1)))
    assert bool((anchors != 0).all())  # an odd vote never ties


def test_draws_are_uniform_over_the_pool_and_a_small_pool_votes_with_all_its_items():
    pool = torch.tensor([[True, False, True, True, False]])
    index, _ = draw_anchors(pool, 3000, torch.Generator().manual_seed(2))
    counts = torch.bincount(index[0], minlength=5).tolist()
    assert counts[1] == counts[4] == 0 and all(900 < counts[i] < 1100 for i in (0, 2, 3))
    codes = torch.tensor([[1.0, 1, -1], [-1, -1, -1], [1, -1, -1], [1, 1, 1], [-1, -1, -1]])
    index, valid = draw_anchors(torch.tensor([[False, False, True, True, False]]), 9, None, replace=False)
    assert valid.sum().item() == 2 and sorted(index[0][valid[0]].tolist()) == [2, 3]
    assert vote(codes, index, valid).tolist() == [[1, 0, 0]]  # ties between the two items give 0


def test_p2p_anchor_is_the_code_of_one_matching_database_item():
    attack = plugins.attacks.create("p2p")
    db_codes = torch.tensor([[1.0, -1, 1], [-1, -1, 1], [1, 1, 1], [-1, 1, -1], [1, 1, -1], [-1, 1, 1]])
    ctx = AttackContext(db_codes, DB_LABELS, db_codes, DB_LABELS, EPS, torch.device("cpu"), torch.Generator().manual_seed(0))
    targets = torch.tensor([[0.0, 0, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]] * 20)
    anchors = attack.anchor_codes(targets, ctx)
    assert anchors[0].tolist() == [1, 1, 1] and anchors[1].tolist() == [-1, -1, 1]  # single matches: items 2 and 1
    picked = {tuple(a.tolist()) for a in anchors[2::3]}
    assert picked == {(1.0, 1.0, -1.0), (-1.0, 1.0, 1.0)}  # items 4 and 5 share the label; both get drawn
    again = attack.anchor_codes(targets, AttackContext(db_codes, DB_LABELS, db_codes, DB_LABELS, EPS,
                                                       torch.device("cpu"), torch.Generator().manual_seed(0)))
    assert torch.equal(anchors, again)


# --- SDHA --------------------------------------------------------------------------------------

def test_sdha_surrogate_distance_and_ap_weights_by_hand():
    adv = torch.tensor([[0.5, -0.2]])
    codes = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [0.0, 1.0]])
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731

    def term(h, r):  # ½|h − r|·σ(5hr) + 1 − σ(5hr), one bit
        return 0.5 * abs(h - r) * s(5 * h * r) + 1 - s(5 * h * r)

    # bit (0.5, +1): ½·0.5·σ(2.5) + 1 − σ(2.5) = 0.306894; bit (−0.2, +1): ½·1.2·σ(−1) + 1 − σ(−1) = 0.892424
    assert term(0.5, 1) + term(-0.2, 1) == pytest.approx(1.199318, abs=1e-6)
    expected = [sum(term(h, r) for h, r in zip((0.5, -0.2), c)) for c in codes.tolist()]
    got = surrogate_distance(adv, codes, sigma=5)
    assert got.shape == (1, 4) and got[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert got[0, 0].item() == pytest.approx(1.199318, abs=1e-6)
    # sign(adv) = (+1, −1): Hamming distances 1, 2, 0, 1.5 → (d + 1e-8)^−0.5
    w = ap_weights(adv, codes, z=0.5)
    assert w[0].tolist() == pytest.approx([1.0, 2 ** -0.5, 1e4, 1.5 ** -0.5], rel=1e-6)


def test_sdha_weighted_distance_averages_relevant_codes_and_falls_back_to_the_own_code():
    adv = torch.tensor([[0.5, -0.2], [0.1, 0.3]], requires_grad=True)
    codes = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
    relevant = torch.tensor([[True, True, False], [False, False, False]])
    own = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    out = weighted_distance(adv, codes, relevant, own, sigma=5, z=0.5)
    terms = ap_weights(adv, codes, 0.5) * surrogate_distance(adv, codes, 5)
    own_term = ap_weights(adv[1:], own[1:], 0.5) * surrogate_distance(adv[1:], own[1:], 5)
    assert out[0].item() == pytest.approx(terms[0, :2].mean().item(), rel=1e-6)
    assert out[1].item() == pytest.approx(own_term.item(), rel=1e-6)
    out.sum().backward()  # the distance carries the gradient, the weights do not
    assert adv.grad is not None and torch.isfinite(adv.grad).all()


# --- HAG ---------------------------------------------------------------------------------------

def test_hag_mask_and_loss_by_hand():
    clean = torch.tensor([[0.8, -0.6, 0.3]])
    adv = torch.tensor([[0.9, 0.7, -0.9]])
    # |ĥ − sign h| = 0.1, 1.7, 1.9 against 1 + τ = 1.5 → only bit 0 is still active
    assert hag_mask(adv, clean, 0.5).tolist() == [[1.0, 0.0, 0.0]]
    # (0.9·0.8 / 1 + 1)² + β·(0.9 / 3)² = 1.72² + 0.09 = 3.0484
    assert hag_loss(adv, clean, 0.5, 1.0).item() == pytest.approx(3.0484, abs=1e-5)
    assert hag_loss(adv, clean, 0.5, 0.0).item() == pytest.approx(2.9584, abs=1e-5)
    # an exact tie |ĥ − sign h| = 1 + τ gives 0.5, as in the reference code
    assert hag_mask(torch.tensor([[-0.5]]), torch.tensor([[0.4]]), 0.5).item() == 0.5
    # every bit flipped past the margin: nothing left to push, agreement term (0 + 1)²
    assert hag_loss(-clean.sign() * 0.99, clean, 0.5, 1.0).item() == pytest.approx(1.0, abs=1e-6)


# --- mainstay ----------------------------------------------------------------------------------

def test_mainstay_loss_by_hand():
    outputs = torch.tensor([[0.5, -0.8], [0.2, 0.9]])
    code = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])  # agreement a = [[0.5, −0.8], [−0.2, 0]]
    # untargeted: a > −0.5 keeps 0.5, −0.2, 0 → (2.5·0.5 + 1.8·(−0.2) + 0) / 3
    assert mainstay_loss(0.5, False)(outputs, code).item() == pytest.approx(0.89 / 3, abs=1e-6)
    # targeted: a < 0.5 keeps −0.8, −0.2, 0 → −(1.2·(−0.8) + 1.8·(−0.2) + 0) / 3
    assert mainstay_loss(0.5, True)(outputs, code).item() == pytest.approx(1.32 / 3, abs=1e-6)
    # no active bit: 0, not NaN
    assert mainstay_loss(0.5, False)(torch.tensor([[-0.9]]), torch.tensor([[1.0]])).item() == 0.0


# --- the engine and its schedule ---------------------------------------------------------------

class AlphaSpy(nn.Module):
    """A linear hash model recording every tanh scale it is called with."""

    def __init__(self, bits=6, d=3 * 4 * 4):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, bits, generator=torch.Generator().manual_seed(0)))
        self.alphas = []

    def forward(self, x, alpha=1.0):
        if torch.is_grad_enabled():
            self.alphas.append(alpha)
        return torch.tanh(alpha * x.flatten(1) @ self.w)


@pytest.mark.parametrize("name, schedule", [("p2p", "bai"), ("dhta", "bai"), ("hag", "proportional"),
                                            ("sdha", "proportional"), ("mainstay", "proportional"),
                                            ("mainstay-t", "proportional")])
def test_every_attack_runs_its_iterations_on_the_alpha_schedule(name, schedule):
    model = AlphaSpy()
    labels = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 1.0]])
    codes = torch.tensor([[1.0, -1, 1, -1, 1, 1], [-1.0, 1, 1, 1, -1, 1], [1.0, 1, -1, -1, 1, -1]])
    ctx = AttackContext(codes, labels, codes, labels, EPS, torch.device("cpu"), torch.Generator().manual_seed(0))
    attack = plugins.attacks.create(name, {"iterations": 20})
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([[0.0, 1], [1.0, 0]]) if attack.targeted else None
    x_adv = attack.perturb(model, x, labels[:2], target, ctx)
    assert model.alphas == [alpha_at(schedule, t, 20) for t in range(20)]
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and model.w.grad is None


def test_targeted_attacks_need_targets():
    ctx = AttackContext(torch.ones(2, 6), torch.eye(2), torch.ones(2, 6), torch.eye(2), EPS, torch.device("cpu"),
                        torch.Generator())
    for name in TARGETED:
        with pytest.raises(ValueError, match="targeted"):
            plugins.attacks.create(name, {"iterations": 1}).perturb(AlphaSpy(), torch.rand(2, 3, 4, 4), torch.eye(2),
                                                                       None, ctx)


# --- a tiny trained victim ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def victim():
    """CSQ, smallcnn width 8, 16 bits, trained 20 epochs on a 400-image single-shape split.

    CSQ rather than DPSH: from a from-scratch smallcnn DPSH's likelihood gradient (proportional
    to bank codes that start at zero) leaves it near chance, and a victim with a handful of
    distinct codes cannot show what an attack does (see ``hashbench.testing.tiny_victim``).
    """
    torch.manual_seed(0)
    dataset = plugins.datasets.create("shapes", {"num_items": 400, "image_size": 32, "num_classes": 4,
                                                    "max_shapes": 1})
    split = make_split(dataset, num_query=40, num_train=300, seed=0)
    model = HashModel(plugins.backbones.create("smallcnn", {"width": 8, "features": 64}).build(32), 16)
    method = plugins.methods.create("csq", {"epochs": 20, "batch_size": 16, "lr": 0.05})
    train_labels = torch.as_tensor(dataset.labels[split.train], dtype=torch.float32)
    data = TrainData(dataset, split.train, train_labels)
    method.setup(len(data), 16, train_labels, torch.device("cpu"))
    optimizer = method.optimizer(model.parameters())

    def step(x, y, pos):
        model.train()
        loss = method.loss(model(x), y, pos)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def before_epoch(epoch):
        for group in optimizer.param_groups:
            group["lr"] = method.lr_at_epoch(epoch)

    run_epochs(data, step, epochs=20, batch_size=16, augment=True, generator=torch.Generator().manual_seed(0),
               device=torch.device("cpu"), before_epoch=before_epoch)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        db_codes = to_binary(model(dataset.images(split.database))).float()
        train_codes = to_binary(model(dataset.images(split.train))).float()
        x = dataset.images(split.query)
        clean = to_binary(model(x)).float()
    db_labels = torch.as_tensor(dataset.labels[split.database], dtype=torch.float32)
    query_labels = torch.as_tensor(dataset.labels[split.query], dtype=torch.float32)
    targets = torch.as_tensor(split.target_labels, dtype=torch.float32)

    def context(seed=0):
        return AttackContext(db_codes, db_labels, train_codes, train_labels, EPS, torch.device("cpu"),
                             torch.Generator().manual_seed(seed))

    def scores(x_adv):
        with torch.no_grad():
            codes = to_binary(model(x_adv)).float()
        topk = len(split.database)
        return (map_at_k(codes, db_codes, query_labels.numpy(), db_labels.numpy(), topk=topk),
                map_at_k(codes, db_codes, split.target_labels, db_labels.numpy(), topk=topk))

    return {"model": model, "x": x, "y": query_labels, "targets": targets, "context": context, "scores": scores,
            "clean": scores(x), "clean_codes": clean}


@pytest.fixture(scope="module")
def results(victim):
    """Each attack (20 iterations) run once on the victim's queries, seed 0."""
    out = {}
    for name in MINE:
        attack = plugins.attacks.create(name, {"iterations": 20})
        target = victim["targets"] if attack.targeted else None
        out[name] = attack.perturb(victim["model"], victim["x"], victim["y"], target, victim["context"](0))
    return out


def test_victim_learned_something(victim):
    clean_map, clean_tmap = victim["clean"]
    assert clean_map > clean_tmap + 0.03  # relevant items rank above the targets' (disjoint) items


@pytest.mark.parametrize("name", MINE)
def test_output_is_an_image_within_the_budget(victim, results, name):
    x, x_adv = victim["x"], results[name]
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert (x_adv - x).abs().max() > EPS / 2  # it did move


@pytest.mark.parametrize("name", MINE)
def test_deterministic_for_a_seed(victim, results, name):
    attack = plugins.attacks.create(name, {"iterations": 20})
    target = victim["targets"] if attack.targeted else None
    again = attack.perturb(victim["model"], victim["x"], victim["y"], target, victim["context"](0))
    assert torch.equal(again, results[name])


@pytest.mark.parametrize("name", ["p2p", "dhta", "mainstay", "mainstay-t"])
def test_random_draws_follow_the_seed(victim, results, name):
    """P2P/DHTA draw anchors, the mainstay attacks a random start: another seed, another result."""
    attack = plugins.attacks.create(name, {"iterations": 20})
    target = victim["targets"] if attack.targeted else None
    other = attack.perturb(victim["model"], victim["x"], victim["y"], target, victim["context"](1))
    if name in ("p2p", "dhta"):
        # The seed picks which matching database items vote; when the victim gives every item of a
        # label the same code (a well-trained single-label victim does), any draw gives the same anchor.
        same_anchors = torch.equal(attack.anchor_codes(victim["targets"], victim["context"](0)),
                                   attack.anchor_codes(victim["targets"], victim["context"](1)))
        assert torch.equal(other, results[name]) == same_anchors
    else:
        assert not torch.equal(other, results[name])


@pytest.mark.parametrize("name", UNTARGETED)
def test_untargeted_attacks_lower_map(victim, results, name):
    clean_map, _ = victim["clean"]
    adv_map, _ = victim["scores"](results[name])
    assert adv_map < clean_map - 0.01


@pytest.mark.parametrize("name", TARGETED)
def test_targeted_attacks_raise_t_map(victim, results, name):
    _, clean_tmap = victim["clean"]
    _, adv_tmap = victim["scores"](results[name])
    assert adv_tmap > clean_tmap + 0.01


@pytest.mark.parametrize("name", ["p2p", "dhta"])
def test_anchor_attacks_reach_their_anchor_codes(victim, results, name):
    attack = plugins.attacks.create(name)
    anchors = attack.anchor_codes(victim["targets"], victim["context"](0))  # the same draws as the run
    with torch.no_grad():
        codes = to_binary(victim["model"](results[name])).float()
    before = 0.5 * (16 - (victim["clean_codes"] * anchors).sum(dim=1))
    after = 0.5 * (16 - (codes * anchors).sum(dim=1))
    assert after.mean() < before.mean() / 2
    assert (after <= 2).float().mean() >= 0.5


def test_mainstay_pushes_away_from_and_towards_the_mainstay_codes(victim, results):
    ctx = victim["context"]()
    own = center_codes(victim["y"], ctx.train_codes, ctx.train_labels, weighting="saat")
    target = center_codes(victim["targets"], ctx.train_codes, ctx.train_labels, weighting="saat")
    with torch.no_grad():
        away = to_binary(victim["model"](results["mainstay"])).float()
        toward = to_binary(victim["model"](results["mainstay-t"])).float()
    clean = victim["clean_codes"]
    # mean agreement with the mainstay code (tied bits of the code are 0 and count as 0)
    assert (away * own).mean() < (clean * own).mean() - 0.1
    assert (toward * target).mean() > (clean * target).mean() + 0.1

"""Adversarial-training defenses (CgAT, SAAT, ATRDH): every method, the bank order of spec §1.9,
zero labels, the lr milestones, divergence, and robustness under the center attack."""

import math

import numpy as np
import pytest
import torch

import defenses.atrdh as atrdh_module
import defenses.cgat as cgat_module
from defenses.cgat import guide_codes
from hashbench import plugins
from hashbench.api.attack import AttackContext
from hashbench.api.defense import DefenseContext
from hashbench.errors import ConfigError
from hashbench.methods.dpsh import DPSH
from hashbench.models.hash_model import HashModel
from hashbench.progress import Reporter
from hashbench.retrieval.adversarial_training import milestones
from hashbench.retrieval.banks import CodeBank
from hashbench.retrieval.codes import center_codes, to_binary
from hashbench.retrieval.metrics import map_at_k
from hashbench.retrieval.prototype import PrototypeTrainer
from hashbench.retrieval.training import TrainData, TrainingDiverged

#: the built-in defenses that train the hash model (third-party plugins installed alongside are not ours to test)
ADVERSARIAL = sorted(n for n in plugins.defenses.names()
                     if plugins.defenses.origin(n)[0] == "hashbench" and not plugins.defenses.get(n).identity
                     and not plugins.defenses.get(n).inference_time)  # purifiers: tests/test_comdefend.py
#: one short epoch: 24 images in batches of 8, one PGD step, a small prototype net
FAST = {"epochs": 1, "batch_size": 8, "iterations": 1, "proto_hidden": (32, 16)}


def fast_params(name: str, **extra) -> dict:
    fields = plugins.defenses.get(name).Params.model_fields
    return {k: v for k, v in {**FAST, **extra}.items() if k in fields}


@pytest.fixture(scope="module")
def tiny() -> TrainData:
    dataset = plugins.datasets.create("shapes", {"num_items": 40, "num_classes": 6, "image_size": 32})
    indices = np.arange(24)
    return TrainData(dataset, indices, torch.as_tensor(dataset.labels[indices], dtype=torch.float32))


def make_model(bits: int = 16, width: int = 8, features: int = 32, seed: int = 0) -> HashModel:
    torch.manual_seed(seed)
    return HashModel(plugins.backbones.create("smallcnn", {"width": width, "features": features}).build(32), bits)


def context(seed: int = 0) -> DefenseContext:
    return DefenseContext(torch.device("cpu"), torch.Generator().manual_seed(seed), Reporter())


def test_the_three_defenses_are_registered():
    assert {"cgat", "saat", "atrdh"} <= set(ADVERSARIAL)


@pytest.mark.parametrize("method_name", plugins.methods.names())
@pytest.mark.parametrize("defense_name", ADVERSARIAL)
def test_every_defense_trains_every_method(defense_name, method_name, tiny):
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    method = plugins.methods.create(method_name, {})
    defense = plugins.defenses.create(defense_name, fast_params(defense_name))
    out, log = defense.fit(model, method, tiny, context())
    assert len(log["history"]) == 1
    epoch = log["history"][0]
    assert {"loss", "hash"} <= set(epoch)
    assert all(math.isfinite(v) for v in epoch.values()), epoch
    assert log["iterations"] == 3
    assert not out.training
    assert any(not torch.equal(a, b) for a, b in zip(before, out.parameters()))
    with torch.no_grad():
        assert torch.isfinite(out(tiny.dataset.images(tiny.indices[:4]))).all()


@pytest.mark.parametrize("defense_name", ADVERSARIAL)
def test_bank_rows_hold_the_latest_outputs(defense_name, tiny):
    """Preinstalled rows are exact ±1 codes; after an epoch every row holds a continuous output."""
    method = plugins.methods.create("dpsh", {})
    plugins.defenses.create(defense_name, fast_params(defense_name)).fit(make_model(), method, tiny, context())
    assert method.bank.u.abs().max() < 1
    assert (method.bank.u != 0).all()


def spy_on_attack_and_bank(monkeypatch, module, events: list) -> None:
    """Record ``module``'s inner-attack calls (code, targeted) and every bank write (rows, outputs)."""
    real_attack, real_update = module.inner_attack, CodeBank.update

    def attack_spy(model, x, code, params, generator, *, targeted):
        events.append(("attack", code.clone(), targeted))
        return real_attack(model, x, code, params, generator, targeted=targeted)

    def update_spy(self, idx, u):
        events.append(("update", idx.clone(), u.detach().clone()))
        real_update(self, idx, u)

    monkeypatch.setattr(module, "inner_attack", attack_spy)
    monkeypatch.setattr(CodeBank, "update", update_spy)


#: per defense: its weighting, the events of one step, and what the batch's bank rows hold for the outer code
BANK_ORDER = [("cgat", "cgat", ["center", "attack", "update", "update", "center"], lambda u: u),
              ("saat", "saat", ["center", "attack", "update", "center", "update"], torch.sign)]


@pytest.mark.parametrize("defense_name, weighting, order, batch_rows", BANK_ORDER)
def test_codes_are_recomputed_after_the_bank_update(defense_name, weighting, order, batch_rows, tiny, monkeypatch):
    """Spec §1.9: code → inner attack → bank[idx] written → code again for the outer loss.  CgAT's
    aliased banks hold the continuous outputs by then; SAAT's holds sign(u) (DPSH's loss writes u after)."""
    events = []
    real_center, real_preinstall = cgat_module.center_codes, CodeBank.preinstall

    def center_spy(y, codes, labels, weighting="cgat", **kwargs):
        result = real_center(y, codes, labels, weighting=weighting, **kwargs)
        events.append(("center", codes.clone(), weighting, result))
        return result

    def preinstall_spy(self, u, labels=None):
        events.append(("preinstall", u.clone()))
        real_preinstall(self, u, labels)

    monkeypatch.setattr(cgat_module, "center_codes", center_spy)
    monkeypatch.setattr(CodeBank, "preinstall", preinstall_spy)
    spy_on_attack_and_bank(monkeypatch, cgat_module, events)
    defense = plugins.defenses.create(defense_name, fast_params(defense_name))
    defense.fit(make_model(), plugins.methods.create("dpsh", {}), tiny, context())

    # the defense writes the batch, DPSH's loss writes the same rows again (with u)
    assert [e[0] for e in events] == ["preinstall"] + order * 3
    installed = events[0][1]
    step = events[1:6]
    pre, attack, post = step[0], step[1], [e for e in step if e[0] == "center"][-1]
    _, idx, u = [e for e in step if e[0] == "update"][-1]
    assert torch.equal(pre[1], installed)  # the inner attack's code: the bank before this batch
    assert torch.equal(attack[1], pre[3]) and attack[2] is False  # untargeted, away from that code
    assert not torch.equal(installed[idx], torch.sign(u))  # (otherwise the order would not show)
    assert torch.equal(post[1][idx], batch_rows(u))  # the outer loss's code sees this batch's outputs
    others = torch.ones(len(installed), dtype=torch.bool)
    others[idx] = False
    assert torch.equal(post[1][others], installed[others])
    assert {e[2] for e in events if e[0] == "center"} == {weighting}


def test_atrdh_prototypes_see_the_updated_bank_and_attack_is_targeted(tiny, monkeypatch):
    events = []
    real_step = PrototypeTrainer.step

    def step_spy(self, targets, codes, labels):
        events.append(("prototypes", codes.clone(), targets.clone()))
        h, losses = real_step(self, targets, codes, labels)
        events.append(("prototype codes", torch.sign(h)))
        return h, losses

    monkeypatch.setattr(PrototypeTrainer, "step", step_spy)
    spy_on_attack_and_bank(monkeypatch, atrdh_module, events)
    plugins.defenses.create("atrdh", fast_params("atrdh")).fit(
        make_model(), plugins.methods.create("dpsh", {}), tiny, context())

    # B[idx] = sign(u); prototype step on B; PGD towards sign h(t); U[idx] = u; DPSH writes B again
    kinds = [e[0] for e in events]
    assert kinds == ["update", "prototypes", "prototype codes", "attack", "update", "update"] * 3
    (_, idx, u), (_, codes, targets), (_, proto), (_, code, targeted) = events[:4]
    assert torch.equal(codes[idx], torch.sign(u))
    assert torch.equal(code, proto) and targeted is True
    assert all(float(t.sum()) > 0 for t in targets)  # target labels are labelled vectors
    assert torch.equal(events[4][2], u)  # the reconstruction bank gets the clean outputs


def test_zero_label_handling(tiny):
    bank = CodeBank(5, 4, torch.tensor([[1.0, 0], [0, 1], [0, 0], [1, 1], [0, 0]]))
    bank.preinstall(torch.tensor([[1.0, 1, -1, -1], [-1, 1, 1, -1], [1, -1, 1, 1], [1, 1, 1, -1], [-1, -1, 1, 1]]))
    y = torch.tensor([[1.0, 0], [0, 0]])
    binary = {"weighting": "cgat", "binary": True, "one_sided": "other"}
    negative = guide_codes(y, bank, zero_labels="negative", **binary)
    assert torch.equal(negative, center_codes(y, bank.binary(), bank.labels))
    assert torch.equal(negative[1], torch.sign(-bank.binary().mean(dim=0)))  # no positives
    exclude = guide_codes(y, bank, zero_labels="exclude", **binary)
    labelled = torch.tensor([0, 1, 3])
    assert torch.equal(exclude[0], center_codes(y[:1], bank.binary()[labelled], bank.labels[labelled])[0])
    assert torch.equal(exclude[1], torch.zeros(4))
    assert not torch.equal(exclude[0], negative[0])  # the unlabelled negatives changed the code

    labels = tiny.labels.clone()
    labels[::3] = 0  # a third of the training images without labels
    data = TrainData(tiny.dataset, tiny.indices, labels)
    for mode in ("negative", "exclude"):
        for name in ("cgat", "saat"):
            _, log = plugins.defenses.create(name, fast_params(name, zero_labels=mode)).fit(
                make_model(), plugins.methods.create("dpsh", {}), data, context())
            assert all(math.isfinite(v) for v in log["history"][0].values())
    with pytest.raises(ConfigError, match="zero_labels"):
        plugins.defenses.get("cgat").from_params({"zero_labels": "drop"})


@pytest.mark.parametrize("faithful, expected", [(False, [1e-2, 1e-2, 1e-2, 1e-3, 1e-4, 1e-4]),
                                                (True, [1e-2, 1e-2, 1e-2, 1e-3, 1e-3, 1e-3])])
def test_lr_milestones(faithful, expected, tiny, monkeypatch):
    """6 iterations: milestones 3 and 4.5; the original float 4.5 never fires."""
    assert milestones(4710, True) == [2355] and milestones(4710, False) == [2355, 3532]
    lrs = []
    real_step = torch.optim.SGD.step

    def step_spy(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step_spy)
    defense = plugins.defenses.create("cgat", fast_params("cgat", epochs=2, faithful_scheduler=faithful))
    _, log = defense.fit(make_model(), plugins.methods.create("dpsh", {}), tiny, context())
    assert lrs == pytest.approx(expected)
    assert log["milestones"] == ([3] if faithful else [3, 4])


@pytest.mark.parametrize("defense_name", ADVERSARIAL)
def test_divergence_names_epoch_and_step(defense_name, tiny):
    class Exploding(DPSH):
        calls = 0

        def loss(self, u, y, idx):
            Exploding.calls += 1
            value = super().loss(u, y, idx)
            return value * float("nan") if Exploding.calls == 2 else value

    defense = plugins.defenses.create(defense_name, fast_params(defense_name))
    with pytest.raises(TrainingDiverged, match=rf"defend {defense_name}: loss '\w+' is nan at epoch 1, step 2"):
        defense.fit(make_model(), Exploding(), tiny, context())


def test_defaults_are_the_papers():
    cgat = plugins.defenses.create("cgat", {}).params
    assert (cgat.epochs, cgat.batch_size, cgat.lr, cgat.momentum, cgat.weight_decay, cgat.augment) == (
        30, 32, 0.01, 0.9, 5e-4, True)
    assert (cgat.lam, cgat.mu, cgat.weighting, cgat.bank_init, cgat.pgd_mode) == (1.0, 0.0, "cgat", "train", "train")
    saat = plugins.defenses.create("saat", {}).params
    assert (saat.epochs, saat.batch_size, saat.lr, saat.momentum, saat.weight_decay, saat.augment) == (
        20, 32, 0.05, 0.0, 1e-5, False)
    assert (saat.lam, saat.mu, saat.weighting, saat.bank_init) == (1.0, 1e-4, "saat", "eval")
    atrdh = plugins.defenses.create("atrdh", {}).params
    assert (atrdh.epochs, atrdh.batch_size, atrdh.lr, atrdh.betas, atrdh.kappa, atrdh.augment) == (
        100, 32, 1e-4, (0.5, 0.999), 2.0, False)
    for p in (cgat, saat, atrdh):
        assert (p.epsilon, p.step_size, p.iterations, p.random_start, p.faithful_scheduler) == (
            8 / 255, 2 / 255, 7, True, False)


# --- robustness on shapes ------------------------------------------------------------------------

def _center_map(model, dataset, query, database, train) -> float:
    """MAP of the query set under the center attack (20 iterations) against ``model``."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    labels = lambda idx: torch.as_tensor(dataset.labels[idx], dtype=torch.float32)
    with torch.no_grad():
        db_codes = to_binary(model(dataset.images(database))).float()
        train_codes = to_binary(model(dataset.images(train))).float()
    ctx = AttackContext(db_codes, labels(database), train_codes, labels(train), 8 / 255, torch.device("cpu"),
                        torch.Generator().manual_seed(1))
    attack = plugins.attacks.create("center", {"iterations": 20})
    x_adv = attack.perturb(model, dataset.images(query), labels(query), None, ctx)
    with torch.no_grad():
        codes = to_binary(model(x_adv))
    for p in model.parameters():
        p.requires_grad_(True)
    return map_at_k(codes, db_codes, labels(query), labels(database))


def test_cgat_and_saat_resist_the_center_attack():
    """A clean model that retrieves well collapses under the center attack; two epochs of CgAT or
    SAAT (DPSH loss) from it keep a much higher MAP under the same attack."""
    dataset = plugins.datasets.create("shapes", {"num_items": 400, "num_classes": 4, "max_shapes": 1})
    perm = np.random.default_rng(0).permutation(400)
    query, database = perm[:64], perm[64:]
    train = database[:256]
    data = TrainData(dataset, train, torch.as_tensor(dataset.labels[train], dtype=torch.float32))
    # Clean model: a few Adam epochs pulling each image's output to a random code of its class
    # (DPSH itself starts slowly from the near-zero outputs of a fresh hash layer).
    model = make_model(features=64)
    class_codes = torch.sign(torch.randn(4, 16, generator=torch.Generator().manual_seed(5)))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(12):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), 32):
            x, y, _ = data.batch(order[start : start + 32], augment=True, generator=generator,
                                    device=torch.device("cpu"))
            loss = (model(x) - y @ class_codes).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    clean_state = {k: v.clone() for k, v in model.state_dict().items()}

    maps = {"none": _center_map(model, dataset, query, database, train)}
    for name in ("cgat", "saat"):
        defended = make_model(features=64)
        defended.load_state_dict(clean_state)
        defended, _ = plugins.defenses.create(name, {"epochs": 2}).fit(
            defended, plugins.methods.create("dpsh", {}), data, context())
        maps[name] = _center_map(defended, dataset, query, database, train)
    model.eval()
    with torch.no_grad():
        clean_codes = to_binary(model(dataset.images(query)))
        db_codes = to_binary(model(dataset.images(database)))
    labels = lambda idx: dataset.labels[idx]
    assert map_at_k(clean_codes, db_codes, labels(query), labels(database)) > 0.9
    assert maps["none"] < 0.4, maps
    assert maps["cgat"] > maps["none"] + 0.15, maps
    assert maps["saat"] > maps["none"] + 0.15, maps

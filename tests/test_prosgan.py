"""ProS-GAN: parameters, architectures at 32 and 224, losses and schedules, and prepare → perturb
on a tiny trained victim through the harness's own stage functions."""

import math

import pytest
import torch
import yaml

from attacks.prosgan import (AdvGenerator, PatchDiscriminator, ProSGAN, ProsganPrototypeNet, check_image_size,
                             gan_lr_factor, prototype_loss, prototype_lr_factor)
from hashbench import plugins
from hashbench.errors import ConfigError, PluginError
from hashbench.harness.config import load_config
from hashbench.harness.plan import build_plan
from hashbench.harness.stages.attack import BUDGET_TOLERANCE, check_batch
from hashbench.harness.stages.context import StageContext, attack_context, load_model, split_of
from hashbench.harness.stages.kinds import KINDS
from hashbench.progress import Reporter
from hashbench.retrieval.codes import to_binary
from hashbench.retrieval.metrics import map_at_k
from hashbench.testing import tiny_victim

# --- parameters ---------------------------------------------------------------------------


def test_defaults_are_the_papers_and_unbounded():
    attack = plugins.attacks.create("prosgan", {})
    p = attack.params
    assert attack.targeted and not attack.bounded and p.epsilon is None
    assert (p.prototype_epochs, p.prototype_steps, p.prototype_batch_size, p.prototype_lr, p.prototype_hidden) == (
        100, 300, 64, 1e-4, 4096)
    assert (p.epochs, p.decay_fraction, p.train_batch_size, p.lr) == (100, 0.5, 24, 1e-4)
    assert (p.rec_weight, p.hash_weight, p.gan_weight, p.d_every, p.width, p.residual_blocks) == (100, 5, 1, 3, 64, 3)
    assert ProSGAN.has_prepare()
    clipped = plugins.attacks.create("prosgan", {"epsilon": 8 / 255})
    assert clipped.bounded and clipped.params.epsilon == pytest.approx(8 / 255)


@pytest.mark.parametrize("values, key", [
    ({"epsilon": 0}, "epsilon"), ({"epsilon": -0.1}, "epsilon"), ({"width": 0}, "width"),
    ({"epochs": 0}, "epochs"), ({"d_every": 0}, "d_every"), ({"residual_blocks": -1}, "residual_blocks"),
    ({"rec_weight": -1}, "rec_weight"), ({"prototype_lr": 0}, "prototype_lr"), ({"sigma": 1}, "sigma"),
    ({"decay_fraction": 1.5}, "decay_fraction"),
])
def test_invalid_parameters_are_rejected(values, key):
    with pytest.raises(ConfigError, match=f"'?{key}'?"):
        ProSGAN.from_params(values, "prosgan")


# --- architectures ------------------------------------------------------------------------


def test_modules_at_32():
    torch.manual_seed(0)
    net, gen, disc = ProsganPrototypeNet(6, 16, hidden=32), AdvGenerator(32, width=8), PatchDiscriminator(32, 6, width=8)
    labels = torch.tensor([[1.0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0]])
    r, h, label_pred = net(labels)
    assert r.shape == (2, 512) and h.shape == (2, 16) and label_pred.shape == (2, 6)
    assert h.abs().max() < 1 and ((label_pred > 0) & (label_pred < 1)).all()
    assert gen.label_encoder.grid == 2 and gen.label_encoder(r).shape == (2, 3, 32, 32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = gen(x, r)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert disc.head.kernel_size == (1, 1) and disc(out).shape == (2, 7)


def test_modules_scale_to_224():
    default = AdvGenerator(224)  # the paper's widths: label map 128×14×14, encoder 64 → 256 channels
    assert default.label_encoder.fc[0].out_features == 128 * 14 * 14
    assert default.encoder[0].out_channels == 64 and default.decoder[0].body[0].in_channels == 256
    assert PatchDiscriminator(224, 38).head.kernel_size == (7, 7)
    torch.manual_seed(0)
    gen, disc = AdvGenerator(224, width=4, residual_blocks=1), PatchDiscriminator(224, 38, width=4)
    r = ProsganPrototypeNet(38, 32, hidden=16)(torch.zeros(1, 38))[0]
    with torch.no_grad():
        out = gen(torch.rand(1, 3, 224, 224) * 2 - 1, r)
        assert out.shape == (1, 3, 224, 224) and disc(out).shape == (1, 39)


@pytest.mark.parametrize("size", [16, 40, 100])
def test_image_size_must_be_a_multiple_of_16_and_at_least_32(size):
    with pytest.raises(PluginError, match=f"multiple of 16 and at least 32.*got {size}"):
        check_image_size(size)


# --- losses and schedules -----------------------------------------------------------------


def test_prototype_loss_by_hand():
    h = torch.tensor([[0.5, -0.5]])
    label_pred = torch.tensor([[0.8, 0.4]])
    t = torch.tensor([[1.0, 0.0]])
    codes = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    labels = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # θ = ½ h·b = [0, −0.5]; s = [1, 0]: terms log(1+e^0) − 0 and log(1+e^−0.5)
    likelihood = (math.log(2) + math.log1p(math.exp(-0.5))) / 2
    mse = (0.2**2 + 0.4**2) / 2
    quantisation = (0.5**2 + 0.5**2) / 1e4
    assert float(prototype_loss(h, label_pred, t, codes, labels)) == pytest.approx(likelihood + mse + quantisation)


def test_schedules():
    assert [prototype_lr_factor(s, 30000) for s in (0, 14999, 15000, 22499, 22500, 29999)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    assert [gan_lr_factor(e, 100, 50) for e in (0, 49, 50, 99)] == pytest.approx([1, 1, 1 - 1 / 51, 1 / 51])
    assert all(gan_lr_factor(e, 5, 0) == 1 for e in range(5))


# --- prepare and perturb on a tiny trained victim -------------------------------------------

TINY = {"prototype_epochs": 1, "prototype_steps": 20, "prototype_hidden": 64, "epochs": 2, "decay_fraction": 0.5,
        "train_batch_size": 16, "width": 4, "residual_blocks": 1, "batch_size": 8}


def _registry(path, num_items, num_train, dpsh_epochs, attack_params):
    reg = {
        "datasets": {"tiny": {"type": "shapes", "params": {"num_items": num_items, "num_classes": 6, "image_size": 32},
                              "split": {"num_query": 20, "num_train": num_train}, "map_topk": None, "pn": [10]}},
        "profiles": {"paper": {"description": "test"}},
        "grids": {"g": {"profile": "paper", "datasets": ["tiny"], "methods": ["dpsh"], "backbones": ["smallcnn"],
                        "bits": [16], "defenses": ["none"], "attacks": ["prosgan"], "seeds": [0],
                        "params": {"backbones": {"smallcnn": {"width": 8, "features": 64}},
                                   "methods": {"dpsh": {"epochs": dpsh_epochs, "batch_size": 32, "lr": 0.05,
                                                        "lr_decay": 1}},
                                   "attacks": {"prosgan": attack_params}}}},
    }
    path.write_text(yaml.safe_dump(reg))
    return load_config(path)


class Harness:
    """Every stage of a one-cell plan, run with the harness's executors, artifacts in memory."""

    def __init__(self, config):
        self.plan = build_plan(config, "g", config.grid("g"))
        self.store = {}
        self.ctx = StageContext(torch.device("cpu"), Reporter(), lambda stage: self.store[stage.key])
        for stage in self.plan.stages():
            self.store[stage.key] = KINDS[stage.kind].run(self.ctx, stage)
        self.cell = next(c for c in self.plan.cells if c.attack == "prosgan")
        self.stages = self.cell.stages
        self.dataset, self.split = split_of(self.ctx, self.stages["split"])
        self.model = load_model(self.ctx, self.stages["train"]).requires_grad_(False)

    def artifact(self, kind):
        return self.store[self.stages[kind].key]

    def context(self, attack, seed=0):
        return attack_context(self.ctx, self.stages["attack"].inputs, attack, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return Harness(_registry(tmp_path_factory.mktemp("prosgan") / "registry.yaml", 100, 48, 2, TINY))


def test_prepare_stores_flat_weights_and_attack_is_unbounded(tiny):
    state = tiny.artifact("prepare").tensors
    assert any(k.startswith("prototype.") for k in state) and any(k.startswith("generator.") for k in state)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert len(state["history.prototype_loss"]) == 1 and len(state["history.hash_loss"]) == 2
    attack = tiny.artifact("attack")
    assert attack.meta["targeted"] and not attack.meta["bounded"] and attack.meta["epsilon"] is None
    assert attack.tensors["query_codes"].shape == (20, 16)
    assert float(attack.tensors["linf"].max()) > 8 / 255  # nothing clips an unbounded attack
    metrics = tiny.artifact("evaluate").meta["metrics"]
    assert 0 <= metrics["t_map"] <= 1


def test_perturb_range_shape_and_determinism(tiny):
    attack = ProSGAN.from_params(TINY)
    ctx = tiny.context(attack)
    ctx.state = dict(tiny.artifact("prepare").tensors)
    x = tiny.dataset.images(tiny.split.query[:6])
    target = torch.as_tensor(tiny.split.target_labels[:6], dtype=torch.float32)
    x_adv = attack.perturb(tiny.model, x, None, target, ctx)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv, ProSGAN.from_params(TINY).perturb(tiny.model, x, None, target, ctx))
    # the harness stored exactly these codes for the first queries
    assert torch.equal(to_binary(tiny.model(x_adv)), tiny.artifact("attack").tensors["query_codes"][:6])
    with pytest.raises(PluginError, match="targeted attack"):
        attack.perturb(tiny.model, x, None, None, ctx)


def test_prepare_is_deterministic_for_a_seed(tiny):
    def prepare(seed):
        attack = ProSGAN.from_params({**TINY, "epochs": 1})
        return attack.prepare(tiny.model, tiny.context(attack, seed))

    a, b, c = prepare(3), prepare(3), prepare(4)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if k.startswith("generator."))


def test_epsilon_clip_is_respected(tiny):
    eps = 4 / 255
    attack = ProSGAN.from_params({**TINY, "epsilon": eps, "epochs": 1})
    ctx = tiny.context(attack)
    ctx.state = attack.prepare(tiny.model, ctx)
    x = tiny.dataset.images(tiny.split.query)
    target = torch.as_tensor(tiny.split.target_labels, dtype=torch.float32)
    x_adv = attack.perturb(tiny.model, x, None, target, ctx)
    assert attack.bounded and ctx.epsilon == eps
    assert float((x_adv - x).abs().max()) <= eps + BUDGET_TOLERANCE
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    check_batch("prosgan", ["hashbench", "0"], attack.bounded, x, x_adv, eps)  # the harness accepts it


def test_state_from_other_settings_is_refused(tiny):
    attack = ProSGAN.from_params({**TINY, "width": 8})
    ctx = tiny.context(attack)
    ctx.state = dict(tiny.artifact("prepare").tensors)
    x = tiny.dataset.images(tiny.split.query[:2])
    target = torch.as_tensor(tiny.split.target_labels[:2], dtype=torch.float32)
    with pytest.raises(PluginError, match="does not fit this attack's settings"):
        attack.perturb(tiny.model, x, None, target, ctx)


def test_prepare_needs_training_images(tiny):
    attack = ProSGAN.from_params(TINY)
    ctx = tiny.context(attack)
    ctx.train_data = None
    with pytest.raises(PluginError, match="training images"):
        attack.prepare(tiny.model, ctx)


# --- effectiveness on the shared tiny victim ---------------------------------------------------

#: ~90 Adam steps in all (60 prototype, 30 GAN): seconds on a CPU core.  With the paper's 1e-4 and
#: reconstruction weight 100 a generator this short-trained is still near-identity, hence 1e-3 and 10.
EFFECTIVE = {"prototype_epochs": 1, "prototype_steps": 60, "prototype_lr": 1e-3, "prototype_hidden": 256,
             "epochs": 6, "decay_fraction": 0.0, "lr": 1e-3, "rec_weight": 10, "width": 4, "residual_blocks": 1}


def test_attack_raises_t_map_towards_the_requested_target():
    victim = tiny_victim()  # CSQ smallcnn, 4 single-shape classes, shared with the contract sweep
    model = victim.model()
    attack = ProSGAN.from_params(EFFECTIVE)
    ctx = victim.attack_context(attack, torch.Generator().manual_seed(0))
    ctx.state = attack.prepare(model, ctx)
    x = victim.dataset.images(victim.split.query)
    targets = torch.as_tensor(victim.split.target_labels, dtype=torch.float32)

    def t_map(requested):
        with torch.no_grad():
            codes = to_binary(model(attack.perturb(model, x, None, requested, ctx)))
        db_labels = victim.dataset.labels[victim.split.database]
        return map_at_k(codes, victim.codes["database"], victim.split.target_labels, db_labels, topk=victim.map_topk)

    attacked = t_map(targets)
    assert attacked > victim.clean_t_map + 0.2
    # conditioning: asking for other queries' targets does not reach these targets
    assert attacked > t_map(targets.roll(1, 0)) + 0.15


def test_the_discriminator_is_counted_plain_with_the_same_flops_and_once_per_process(monkeypatch):
    from hashbench.api import flops
    from hashbench.api.flops import class_flops, module_flops

    spectral = module_flops(lambda: PatchDiscriminator(32, 7, width=8), (1, 3, 32, 32))
    assert module_flops(lambda: PatchDiscriminator(32, 7, width=8, spectral=False), (1, 3, 32, 32)) == spectral
    counted = []
    monkeypatch.setattr(flops, "module_flops", lambda build, *shapes: counted.append(shapes) or module_flops(build, *shapes))
    class_flops.cache_clear()
    assert class_flops(PatchDiscriminator, (32, 7, 8, False), (1, 3, 32, 32)) == spectral
    assert class_flops(PatchDiscriminator, (32, 7, 8, False), (1, 3, 32, 32)) == spectral
    assert counted == [((1, 3, 32, 32),)]

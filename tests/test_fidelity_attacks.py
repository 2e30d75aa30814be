"""Issue 18, items 5d and 5e: HAG, SDHA and THA as SAAT's (and TAD's) released attacks run them.

5d: SAAT's HAG and SDHA ``adv_generator`` return ``sign`` of the last loop iteration's forward
output, computed before that iteration's update, so the adversarial code is the code of the
image the last forward saw (``output_image: last_forward``).
5e: THA's prototype net is trained on label vectors drawn from ``unique(database labels)``,
the all-zero vector included, in both released codes; SAAT's copy draws 128 labels a step and
wraps the circle loss in softplus (the ``saat`` grids), TAD's 32 without softplus (the default).
"""

import pytest
import torch
from torch import nn

from hashbench import plugins
from hashbench.api.attack import AttackContext
from hashbench.harness.config import load_config
from hashbench.harness.plan import build_plan
from hashbench.models.hash_model import HashModel
from hashbench.retrieval.codes import to_binary
from hashbench.retrieval.prototype import PrototypeTrainer, circle_loss, target_candidates


class Recording(nn.Module):
    """A hash model that keeps a copy of every batch it is called on."""

    def __init__(self, net: HashModel) -> None:
        super().__init__()
        self.net = net
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.net(x, alpha)


def victim() -> HashModel:
    torch.manual_seed(0)
    net = HashModel(plugins.backbones.create("smallcnn", {"width": 8, "features": 32}).build(32), 16).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def context(bits: int = 16) -> AttackContext:
    g = torch.Generator().manual_seed(3)
    codes = torch.sign(torch.randn(20, bits, generator=g))
    labels = (torch.rand(20, 4, generator=g) < 0.5).float()
    return AttackContext(codes, labels, codes, labels, 8 / 255, torch.device("cpu"), torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name, extra", [("hag", {"lr": 2.0}), ("sdha", {"lr": 0.05}), ("sdha-t", {"lr": 0.05})])
def test_hag_and_sdha_return_the_image_of_the_last_forward(name, extra):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])
    target = 1 - y if plugins.attacks.get(name).targeted else None
    model = Recording(victim())
    attack = plugins.attacks.create(name, {"iterations": 4, **extra})
    assert attack.params.output_image == "last_forward"
    kept = attack.perturb(model, x, y, target, context())
    assert len(model.inputs) == 4 + (name != "sdha-t")  # one per iteration, after HAG's and SDHA's clean forward
    assert torch.equal(kept, model.inputs[-1])
    with torch.no_grad():  # the code the harness encodes is the code of that forward
        assert torch.equal(to_binary(model.net(kept)), to_binary(model.net(model.inputs[-1], 1.0)))

    stepped = plugins.attacks.create(name, {"iterations": 4, "output_image": "last_step", **extra}).perturb(
        Recording(victim()), x, y, target, context())
    assert not torch.equal(stepped, kept)  # the final update moved the image
    assert float((stepped - x).abs().max()) <= 8 / 255 + 1e-6 and float((kept - x).abs().max()) <= 8 / 255 + 1e-6


def test_tha_trains_its_prototypes_on_the_zero_label_too(monkeypatch):
    db_labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    assert target_candidates(db_labels, zero_label=True).tolist() == [[0, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert target_candidates(db_labels).tolist() == [[0, 1, 0], [1, 0, 0]]

    drawn = []
    real = PrototypeTrainer.step

    def spy(self, targets, codes, labels):
        drawn.append(targets.clone())
        return real(self, targets, codes, labels)

    monkeypatch.setattr(PrototypeTrainer, "step", spy)
    attack = plugins.attacks.create("tha", {"epochs": 1, "steps_per_epoch": 3, "proto_hidden": (16, 8)})
    assert attack.params.proto_zero_label and attack.params.proto_batch_size == 32
    g = torch.Generator().manual_seed(0)
    codes = torch.sign(torch.randn(4, 8, generator=g))
    ctx = AttackContext(codes, db_labels, codes, db_labels, 8 / 255, torch.device("cpu"), g)
    attack.prepare(victim(), ctx)
    targets = torch.cat(drawn)
    assert targets.shape == (3 * 32, 3)
    assert bool((targets.sum(dim=1) == 0).any())  # the all-zero label vector is trained on


def test_saat_grid_runs_saats_prototype_net():
    config = load_config()

    def tha_params(grid: str) -> set[tuple]:
        plan = build_plan(config, grid, config.grid(grid), require_data=False)
        return {(c.resolved_params()["attack"]["proto_batch_size"], c.resolved_params()["attack"]["circle_softplus"])
                for c in plan.cells if c.attack == "tha"}

    assert tha_params("saat-table1") == {(128, True)}
    assert tha_params("table1") == {(32, False)}


def test_circle_softplus_wraps_the_summed_loss():
    g = torch.Generator().manual_seed(0)
    h = torch.tanh(torch.randn(4, 8, generator=g))
    codes = torch.sign(torch.randn(10, 8, generator=g))
    labels = (torch.rand(10, 3, generator=g) < 0.5).float()
    targets = (torch.rand(4, 3, generator=g) < 0.5).float()
    params = plugins.attacks.create("tha", {}).params
    plain = circle_loss(h, codes, targets, labels, params)
    soft = circle_loss(h, codes, targets, labels, params.model_copy(update={"circle_softplus": True}))
    assert float(soft) == pytest.approx(float(nn.functional.softplus(plain)), rel=1e-6)

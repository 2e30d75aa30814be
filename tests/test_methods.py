import math

import pytest
import torch

from hashbench import registries


def test_dpsh_loss_matches_hand_computation():
    method = registries.methods.create("dpsh", {"eta": 0.5})
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    method.setup(3, 2, labels, "cpu")
    method.bank.u[2] = torch.tensor([0.5, -0.5])  # an item seen in an earlier batch
    u = torch.tensor([[0.5, 0.5], [-0.5, 0.5]])
    loss = method.loss(u, labels[:2], torch.tensor([0, 1]))
    # θ = ½ u·U with U = [[.5,.5],[-.5,.5],[.5,-.5]]:
    #   row 0: θ = [0.25, 0, 0],  s = [1, 0, 1]
    #   row 1: θ = [0, 0.25, -0.25], s = [0, 1, 1]
    def nll(theta, s):
        return math.log1p(math.exp(-abs(theta))) + max(theta, 0) - s * theta

    pairs = [(0.25, 1), (0, 0), (0, 1), (0, 0), (0.25, 1), (-0.25, 1)]
    likelihood = sum(nll(t, s) for t, s in pairs) / 6
    quantisation = 0.25  # every |u| = 0.5 → (u − sign u)² = 0.25
    assert float(loss) == pytest.approx(likelihood + 0.5 * quantisation, rel=1e-6)
    assert torch.equal(method.bank.u[:2], u)  # the bank rows were written before the loss


def test_dpsh_step_schedule_and_defaults():
    method = registries.methods.create("dpsh", {})
    p = method.params
    assert (p.epochs, p.batch_size, p.lr, p.momentum, p.weight_decay, p.eta) == (100, 64, 0.01, 0.9, 5e-4, 1e-3)
    assert method.lr_at_epoch(32) == pytest.approx(0.01)
    assert method.lr_at_epoch(33) == pytest.approx(0.001)
    assert method.lr_at_epoch(66) == pytest.approx(0.0001)


def test_cgat_milestones_faithful_and_intended():
    cgat = registries.defenses.create("cgat", {})
    assert cgat.milestones(4710) == [2355.0, 3532.0]
    faithful = registries.defenses.create("cgat", {"faithful_scheduler": True})
    assert faithful.milestones(4710) == [2355.0]  # 3532.5 is never reached by an integer step count

"""GreedyHash, CSQ-C, DPN, HSWD and Ortho: each loss against a value computed by hand (plain Python
loops) on a tiny batch, their gradients where a trick is involved (the straight-through sign), the
state stored with the model (classifier, codebook, centres).  Defaults and parameter checks are
in test_methods.py with the other methods'."""

import math

import pytest
import torch

from hashbench import plugins
from hashbench.testing import tiny_victim

# A training set of 4 items, 3 classes, 4 bits.  The batch is items 0 and 1; items 2 and 3
# sit in the bank from an earlier batch (as in test_methods.py).
LABELS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
BATCH_U = torch.tensor([[0.5, -0.5, 0.25, 0.75], [-0.25, 0.5, 0.5, -0.5]])
SEEN_U = torch.tensor([[0.75, 0.25, -0.5, 0.5], [-0.5, -0.75, 0.25, 0.5]])
IDX = torch.tensor([0, 1])
# Three items for the pointwise losses: one label, two labels, none.
Y3 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
U3 = [[0.5, -0.5, 0.25, 0.75], [-0.25, 0.5, 0.5, -0.5], [0.25, -0.75, -0.5, 0.5]]
W = [[0.5, -1.0, 0.25, 0.0], [-0.5, 0.5, 1.0, -0.25], [1.0, 0.25, -0.5, 0.75]]  # a 3-class, 4-bit classifier


def _sign(v: float) -> float:
    return math.copysign(1.0, v) if v else 0.0


def _dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def _log_softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    lse = top + math.log(sum(math.exp(v - top) for v in logits))
    return [v - lse for v in logits]


def _swd(u: list[list[float]], target: list[list[float]]) -> float:
    """(1/(bK)) Σ_k Σ_i (sort(u[:, k])_i − sort(t[:, k])_i)², column by column."""
    b, k = len(u), len(u[0])
    total = 0.0
    for col in range(k):
        a, t = sorted(row[col] for row in u), sorted(row[col] for row in target)
        total += sum((x - y) ** 2 for x, y in zip(a, t))
    return total / (b * k)


def _method(name: str, params: dict, labels: torch.Tensor = LABELS, bits: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    method = plugins.methods.create(name, params)
    method.setup(len(labels), bits, labels, "cpu")
    return method


# --- GreedyHash ------------------------------------------------------------------------------

def _greedy(alpha: float, multilabel: str) -> tuple[float, list[list[float]]]:
    """GreedyHash's loss on U3/Y3 with classifier W, and its gradient through the straight-through sign."""
    n, k = len(U3), len(U3[0])
    loss, grad = 0.0, [[0.0] * k for _ in range(n)]
    for i, (row, y) in enumerate(zip(U3, Y3.tolist())):
        b = [_sign(v) for v in row]
        logp = _log_softmax([_dot(w, b) for w in W])
        if multilabel == "argmax":
            target = [0.0] * 3
            target[y.index(max(y))] = 1.0  # the first label; class 0 for the unlabelled item
        else:
            target = [v / max(sum(y), 1) for v in y]
        loss -= sum(t * lp for t, lp in zip(target, logp)) / n
        # d/db of −Σ t log p = Σ_c (p_c·Σt − t_c) W_c; the sign passes it on unchanged
        mass = sum(target)
        for c in range(3):
            coef = (math.exp(logp[c]) * mass - target[c]) / n
            for j in range(k):
                grad[i][j] += coef * W[c][j]
    for i, row in enumerate(U3):
        for j, v in enumerate(row):
            loss += alpha * abs(abs(v) - 1) ** 3 / (n * k)
            grad[i][j] += alpha * -3 * (1 - abs(v)) ** 2 * _sign(v) / (n * k)  # |v| < 1 here
    return loss, grad


@pytest.mark.parametrize("multilabel", ["argmax", "spread"])
def test_greedyhash_loss_and_straight_through_gradient_match_hand_computation(multilabel):
    method = _method("greedyhash", {"alpha": 0.5, "multilabel": multilabel}, labels=Y3)
    method.tensors["classifier"] = torch.tensor(W)
    u = torch.tensor(U3, requires_grad=True)
    loss = method.loss(u, Y3, torch.arange(3))
    expected, grad = _greedy(0.5, multilabel)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    torch.testing.assert_close(u.grad, torch.tensor(grad), rtol=1e-5, atol=1e-7)


def test_greedyhash_multilabel_choices_differ_only_on_multilabel_items():
    single = Y3[:1]
    losses = {}
    for mode in ("argmax", "spread"):
        method = _method("greedyhash", {"multilabel": mode}, labels=Y3)
        method.tensors["classifier"] = torch.tensor(W)
        losses[mode] = (float(method.loss(torch.tensor(U3[:1]), single, IDX[:1])),
                        float(method.loss(torch.tensor(U3), Y3, torch.arange(3))))
    assert losses["argmax"][0] == pytest.approx(losses["spread"][0], rel=1e-7)
    assert losses["argmax"][1] != pytest.approx(losses["spread"][1], rel=1e-3)


def test_greedyhash_classifier_starts_like_nn_linear_from_the_global_seed():
    a = _method("greedyhash", {}, bits=16, seed=3).tensors["classifier"]
    b = _method("greedyhash", {}, bits=16, seed=3).tensors["classifier"]
    c = _method("greedyhash", {}, bits=16, seed=4).tensors["classifier"]
    assert a.shape == (3, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.abs().max()) <= 1 / math.sqrt(16)


@pytest.mark.parametrize("learn", [True, False])
def test_greedyhash_classifier_is_learned_only_when_asked(learn):
    method = _method("greedyhash", {"learn_classifier": learn, "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0},
                     labels=Y3)
    start = method.tensors["classifier"].detach().clone()
    scale = torch.nn.Parameter(torch.ones(1))
    optimizer = method.optimizer([scale])
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(in_optimizer) == (2 if learn else 1)
    method.loss(scale * torch.tensor(U3), Y3, torch.arange(3)).backward()
    optimizer.step()
    assert torch.equal(method.tensors["classifier"], start) is not learn


def test_greedyhash_classifier_round_trips_and_must_fit_the_run():
    trained = _method("greedyhash", {}, labels=Y3)
    saved = trained.state_tensors()
    assert set(saved) == {"classifier"}
    again = plugins.methods.create("greedyhash", {})
    again.load_state_tensors(saved)
    again.setup(3, 4, Y3, "cpu")
    assert torch.equal(again.tensors["classifier"], saved["classifier"])
    # optimising the loaded copy leaves the artifact's tensor alone
    optimizer = again.optimizer([])
    again.loss(torch.tensor(U3), Y3, torch.arange(3)).backward()
    optimizer.step()
    assert not torch.equal(again.tensors["classifier"], saved["classifier"])
    assert torch.equal(saved["classifier"], trained.tensors["classifier"])
    wrong = plugins.methods.create("greedyhash", {})
    wrong.load_state_tensors(saved)
    with pytest.raises(ValueError, match=r"greedyhash: the loaded 'classifier' is \(3, 4\), but this run has "
                                         r"6 classes and 4 bits \(expected \(6, 4\)\)"):
        wrong.setup(3, 4, torch.eye(6)[:3], "cpu")
    with pytest.raises(ValueError, match="greedyhash: the model artifact lacks classifier"):
        wrong.load_state_tensors({"centers": saved["classifier"]})


def test_greedyhash_train_stage_stores_the_classifier_it_learned():
    """Through the harness's train stage: the same seed draws the same start, so the stored
    classifiers differ because one of them was learned."""
    params = {"epochs": 1, "batch_size": 32, "lr": 0.05}
    stored = []
    for learn in (True, False):
        victim = tiny_victim(method="greedyhash", method_params={**params, "learn_classifier": learn})
        stored.append(victim._ctx.artifact(victim._stages["train"]).tensors["method.classifier"])
    assert stored[0].shape == stored[1].shape == (4, 16)
    assert not torch.equal(stored[0], stored[1])


# --- CSQ-C -------------------------------------------------------------------------------------

def test_csq_c_loss_is_the_centre_bce_plus_the_swd_term():
    method = _method("csq-c", {"quantization_alpha": 0.3}, labels=Y3, seed=2)
    h = [[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1]]  # rows 0–2 of the Sylvester H_4, as CSQ
    assert method.centers.tolist() == h
    tie = method.tie.tolist()
    centers = [h[0], [1, 1, tie[2], tie[3]], tie]  # h0 + h2 = (2, 2, 0, 0): ties at bits 2 and 3
    state = method.generator.get_state()
    loss = method.loss(torch.tensor(U3), Y3, torch.arange(3))
    method.generator.set_state(state)
    target = method.draw_target(torch.Size([3, 4]), torch.tensor(U3)).tolist()
    bce = 0.0
    for row, c in zip(U3, centers):
        for v, t in zip(row, c):
            p, q = (v + 1) / 2, (t + 1) / 2
            bce -= q * math.log(p) + (1 - q) * math.log(1 - p)
    assert float(loss) == pytest.approx(bce / 12 + 0.3 * _swd(U3, target), rel=1e-6)
    assert set(method.state_tensors()) == {"centers", "tie"}


def test_csq_c_same_seed_same_loss():
    def loss(seed: int) -> float:
        return float(_method("csq-c", {}, labels=Y3, seed=seed).loss(torch.tensor(U3), Y3, torch.arange(3)))

    assert loss(7) == loss(7)
    assert loss(7) != loss(8)  # other balanced ±1 targets


# --- DPN ---------------------------------------------------------------------------------------

def test_dpn_targets_are_random_balanced_codes_from_the_seed():
    def centers(seed: int) -> torch.Tensor:
        return _method("dpn", {"center_seed": seed}, labels=torch.eye(6), bits=8).centers

    a, b, c = centers(0), centers(0), centers(1)
    assert a.shape == (6, 8) and ((a == -1).sum(1) == 4).all() and a.abs().eq(1).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dpn_loss_matches_hand_computation():
    method = _method("dpn", {"margin": 0.8}, labels=Y3)
    h, tie = method.centers.tolist(), method.tie.tolist()
    summed = [a + b for a, b in zip(h[0], h[2])]
    targets = [h[0], [_sign(v) if v else t for v, t in zip(summed, tie)], tie]
    u = [list(U3[0]), U3[1], U3[2]]
    u[0][0] = 0.9 * targets[0][0]  # beyond the margin: its hinge is 0
    terms = [max(0.8 - v * t, 0.0) for row, tgt in zip(u, targets) for v, t in zip(row, tgt)]
    assert terms[0] == 0.0
    loss = method.loss(torch.tensor(u), Y3, torch.arange(3))
    assert float(loss) == pytest.approx(sum(terms) / 12, rel=1e-6)
    assert method.label_centers(Y3).tolist() == targets


def test_dpn_targets_round_trip_and_name_the_method():
    saved = _method("dpn", {}, labels=Y3).state_tensors()
    assert set(saved) == {"centers", "tie"}
    again = plugins.methods.create("dpn", {"center_seed": 9})
    again.load_state_tensors(saved)
    again.setup(3, 4, Y3, "cpu")
    assert torch.equal(again.centers, saved["centers"])
    wrong = plugins.methods.create("dpn", {})
    wrong.load_state_tensors(saved)
    with pytest.raises(ValueError, match=r"dpn: the loaded hash centres are \(3, 4\).*5 classes and 4 bits"):
        wrong.setup(3, 4, torch.eye(5)[:3], "cpu")


# --- HSWD --------------------------------------------------------------------------------------

def _nll(theta: float, s: int) -> float:
    return math.log(1 + math.exp(theta)) - s * theta


def test_hswd_loss_is_balanced_hashnet_at_alpha_bits_over_k_plus_swd():
    method = _method("hswd", {"alpha_bits": 2.0, "quantization_alpha": 0.3, "label_bank": "all"}, seed=4)
    method.bank.u[2:] = SEEN_U
    state = method.generator.get_state()
    loss = method.loss(BATCH_U, LABELS[:2], IDX)
    method.generator.set_state(state)
    target = method.draw_target(BATCH_U.shape, BATCH_U).tolist()
    assert torch.equal(method.bank.u[:2], BATCH_U) and torch.equal(method.bank.u[2:], SEEN_U)
    bank, y = BATCH_U.tolist() + SEEN_U.tolist(), LABELS.tolist()
    terms = [(_nll(2.0 / 4 * _dot(bank[i], bank[j]), int(_dot(y[i], y[j]) > 0)), int(_dot(y[i], y[j]) > 0))
             for i in range(2) for j in range(4)]
    s1 = sum(s for _, s in terms)
    likelihood = sum(v for v, s in terms if s) / s1 + sum(v for v, s in terms if not s) / (8 - s1)
    assert float(loss) == pytest.approx(likelihood + 0.3 * _swd(BATCH_U.tolist(), target), rel=1e-6)


def test_hswd_default_scale_is_ten_over_k():
    """With no quantisation, HSWD at K bits is HashNet at α = 10/K (both fill labels as visited)."""
    u = torch.tensor([[0.5, -0.5] * 8, [-0.25, 0.5] * 8])
    hswd = _method("hswd", {"quantization_alpha": 0.0}, bits=16)
    hashnet = _method("hashnet", {"alpha": 10 / 16}, bits=16)
    assert float(hswd.loss(u, LABELS[:2], IDX)) == pytest.approx(float(hashnet.loss(u, LABELS[:2], IDX)), rel=1e-6)


# --- Ortho -------------------------------------------------------------------------------------

CODEBOOK = [[1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]]
GAMMA, BETA = [1.0, 2.0, 0.5, 1.0], [0.0, 0.1, -0.2, 0.3]


def _ortho_z(u: list[list[float]]) -> list[list[float]]:
    n, k = len(u), len(u[0])
    z = [[0.0] * k for _ in range(n)]
    for j in range(k):
        col = [row[j] for row in u]
        mean = sum(col) / n
        var = sum((v - mean) ** 2 for v in col) / n
        for i in range(n):
            z[i][j] = GAMMA[j] * (col[i] - mean) / math.sqrt(var + 1e-5) + BETA[j]
    return z


def _ortho_expected(s: float, m: float, margin_type: str, quan: float = 0.0, quan_type: str = "cs") -> float:
    z = _ortho_z(U3)
    total = 0.0
    for row, y in zip(z, Y3.tolist()):
        norm = math.sqrt(_dot(row, row))
        cos = [_dot(row, o) / (norm * 2.0) for o in CODEBOOK]  # |o| = √4
        if margin_type == "cos":
            logits = [s * (c - m * t) for c, t in zip(cos, y)]
        else:
            logits = [s * math.cos(math.acos(c) + m * t) for c, t in zip(cos, y)]
        logp = _log_softmax(logits)
        total -= sum(t / max(sum(y), 1) * lp for t, lp in zip(y, logp))
    loss = total / 3
    if quan:
        terms = []
        for row in z:
            signs = [_sign(v) for v in row]
            if quan_type == "cs":
                terms.append(1 - _dot(row, signs) / (math.sqrt(_dot(row, row)) * math.sqrt(_dot(signs, signs))))
            else:
                terms += [abs(v - t) if quan_type == "l1" else (v - t) ** 2 for v, t in zip(row, signs)]
        loss += quan * sum(terms) / len(terms)
    return loss


def _ortho(params: dict):
    method = _method("ortho", params, labels=Y3)
    method.tensors.update(codebook=torch.tensor(CODEBOOK), bn_weight=torch.tensor(GAMMA), bn_bias=torch.tensor(BETA))
    return method


@pytest.mark.parametrize("margin_type", ["cos", "arc"])
def test_ortho_loss_matches_hand_computation(margin_type):
    method = _ortho({"scale": 2.0, "margin": 0.3, "margin_type": margin_type})
    loss = method.loss(torch.tensor(U3), Y3, torch.arange(3))
    assert float(loss) == pytest.approx(_ortho_expected(2.0, 0.3, margin_type), rel=1e-5)


@pytest.mark.parametrize("quan_type", ["cs", "l1", "l2"])
def test_ortho_quantisation_terms_match_hand_computation(quan_type):
    method = _ortho({"quan": 0.5, "quan_type": quan_type})
    loss = method.loss(torch.tensor(U3), Y3, torch.arange(3))
    assert float(loss) == pytest.approx(_ortho_expected(8.0, 0.2, "cos", 0.5, quan_type), rel=1e-5)


def test_ortho_single_item_batch_stays_finite():
    """One item normalises to β = 0 at the start: every cosine is 0 and the logits are −s·m·y."""
    method = _method("ortho", {}, labels=Y3)
    loss = method.loss(torch.tensor(U3[1:2]), Y3[1:2], IDX[:1])
    logp = _log_softmax([-8 * 0.2, 0.0, -8 * 0.2])
    assert float(loss) == pytest.approx(-(logp[0] + logp[2]) / 2, rel=1e-6)


def test_ortho_codebook_from_its_seed_and_learned_batch_norm():
    a = _method("ortho", {"codebook_seed": 1}, labels=torch.eye(6), bits=16, seed=0)
    b = _method("ortho", {"codebook_seed": 1}, labels=torch.eye(6), bits=16, seed=5)
    c = _method("ortho", {"codebook_seed": 2}, labels=torch.eye(6), bits=16)
    assert torch.equal(a.tensors["codebook"], b.tensors["codebook"])  # the global seed plays no part
    assert not torch.equal(a.tensors["codebook"], c.tensors["codebook"])
    assert a.tensors["codebook"].abs().eq(1).all()
    assert torch.equal(a.tensors["bn_weight"], torch.ones(16)) and torch.equal(a.tensors["bn_bias"], torch.zeros(16))
    optimizer = a.optimizer([])
    learned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert learned == {id(a.tensors["bn_weight"]), id(a.tensors["bn_bias"])}
    assert set(a.state_tensors()) == {"codebook", "bn_weight", "bn_bias"}

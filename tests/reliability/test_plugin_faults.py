"""Faulty plugins: each fault is detected and reported with the plugin's distribution.

At run time the harness checks every attack batch (shape, finite, [0, 1], ε) and names the
plugin of any exception; a failed cell does not stop the others, whose records are kept.
``hashbench.testing``'s contract checks catch the same faults before a run, plus the ones
a single run cannot see (non-determinism, a model left in training mode, no effect).
Faulty plugins are registered programmatically (``Registry.register``), not installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from hashbench import plugins
from hashbench.api.attack import Attack, AttackParams
from hashbench.api.defense import Defense
from hashbench.api.registry import Registry
from hashbench.errors import PluginError
from hashbench.results import read_records
from hashbench.testing import Victim, check_attack, check_defense, tiny_victim

from .conftest import FAST, assert_clear_error, invoke

DIST, VERSION = "faulty-plugins", "6.6.6"
ORIGIN = f"({DIST} {VERSION})"


class _Faulty(Attack):
    description = "a deliberately broken attack (reliability tests)"
    paper = "-"
    Params = AttackParams

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def perturb(self, model, x, y, target, ctx):
        return self.shift(x)


class Raises(_Faulty):
    def shift(self, x):
        raise ValueError("kaboom [/x] <b>")  # also markup for the terminal and the HTML report


class WrongShape(_Faulty):
    def shift(self, x):
        return x[:, :, 1:, :]


class NotATensor(_Faulty):
    def shift(self, x):
        return x.tolist()


class OutOfRange(_Faulty):
    bounded = False  # no ε-ball: only the [0, 1] check applies

    def shift(self, x):
        return x * 2 - 0.5


class BeyondEpsilon(_Faulty):
    def shift(self, x):
        return (x + 0.1).clamp(0, 1)


class NonFinite(_Faulty):
    def shift(self, x):
        return torch.full_like(x, float("nan"))


def _strong(x: torch.Tensor, noise: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + eps * noise.sign()).clamp(0, 1)


class GlobalRandom(_Faulty):
    """Random signs from torch's global generator instead of ctx.generator."""

    def shift(self, x):
        return _strong(x, torch.rand(x.shape) - 0.5, self.params.epsilon)


class EntropyRandom(_Faulty):
    """Random signs from the operating system: different on every call."""

    def shift(self, x):
        raw = torch.frombuffer(bytearray(os.urandom(x.numel())), dtype=torch.uint8).reshape(x.shape)
        return _strong(x, raw.float() - 127.5, self.params.epsilon)


class LeavesTrainMode(_Faulty):
    def perturb(self, model, x, y, target, ctx):
        model.train()
        return x.clone()


class DoesNothing(_Faulty):
    def shift(self, x):
        return x.clone()


class NoDescription(_Faulty):
    description = ""

    def shift(self, x):
        return x.clone()


class BadState(_Faulty):
    def prepare(self, model, ctx):
        return {"net": torch.nn.Linear(2, 2)}  # a module, not a tensor: cannot be stored safely

    def shift(self, x):
        return x.clone()


FAULTY_ATTACKS: dict[str, type[Attack]] = {
    "raises": Raises, "wrong-shape": WrongShape, "not-a-tensor": NotATensor, "out-of-range": OutOfRange,
    "beyond-eps": BeyondEpsilon, "non-finite": NonFinite, "global-random": GlobalRandom,
    "entropy-random": EntropyRandom, "train-mode": LeavesTrainMode, "does-nothing": DoesNothing,
    "no-description": NoDescription, "bad-state": BadState,
}


class _FaultyDefense(Defense):
    description = "a deliberately broken defense (reliability tests)"
    paper = "-"


class FitRaises(_FaultyDefense):
    def fit(self, model, method, data, ctx):
        raise RuntimeError("out of patience")


class SkipsTheMethodLoss(_FaultyDefense):
    def fit(self, model, method, data, ctx):
        with torch.no_grad():
            model.hash_layer.bias.add_(0.01)
        return model, {}


class ReturnsTheCleanModel(_FaultyDefense):
    def fit(self, model, method, data, ctx):
        return model, {}


class NaNInTheLog(_FaultyDefense):
    def fit(self, model, method, data, ctx):
        x, y, pos = data.batch(torch.arange(8), augment=False, generator=ctx.generator, device=ctx.device)
        loss = method.loss(model(x), y, pos)
        loss.backward()
        with torch.no_grad():
            model.hash_layer.bias.sub_(0.01 * model.hash_layer.bias.grad)
        return model, {"loss": float("nan")}


FAULTY_DEFENSES: dict[str, type[Defense]] = {
    "fit-raises": FitRaises, "skips-method-loss": SkipsTheMethodLoss, "returns-clean": ReturnsTheCleanModel,
    "nan-log": NaNInTheLog,
}


@pytest.fixture(scope="module", autouse=True)
def faulty_plugins() -> Iterator[None]:
    for name, cls in FAULTY_ATTACKS.items():
        plugins.attacks.register(name, cls, distribution=DIST, version=VERSION)
    for name, cls in FAULTY_DEFENSES.items():
        plugins.defenses.register(name, cls, distribution=DIST, version=VERSION)
    yield
    for name in FAULTY_ATTACKS:
        plugins.attacks.unregister(name)
    for name in FAULTY_DEFENSES:
        plugins.defenses.unregister(name)


@pytest.fixture(scope="module")
def victim() -> Victim:
    return tiny_victim()


# -- the contract checks ---------------------------------------------------------------------

ATTACK_FAULTS = [
    ("raises", "raised ValueError in perturb: kaboom"),
    ("wrong-shape", ", 3, 31, 32) for a batch of shape ("),
    ("not-a-tensor", "returned list for a batch of shape"),
    ("out-of-range", "returned values in [-0.5000, 1.5000], outside [0, 1]"),
    ("beyond-eps", "exceeded its budget: L∞ 0.10000 > ε 0.03137"),
    ("non-finite", "returned non-finite values"),
    ("global-random", "is not deterministic for a seed: its output depends on torch's global random state"),
    ("entropy-random", "is not deterministic for a seed: two runs with seed 0 differ"),
    ("train-mode", "left the model in training mode after perturb"),
    ("does-nothing", "does not lower MAP"),
    ("no-description", "class attribute 'description' is empty"),
    ("bad-state", "prepare returned dict; it must return a dict of named tensors"),
]


DEFENSE_FAULTS = [
    ("fit-raises", "raised RuntimeError in fit: out of patience"),
    ("skips-method-loss", "never called the hashing method's loss"),
    ("returns-clean", "returned the clean model unchanged"),
    ("nan-log", "its log cannot be stored as JSON"),
]


CHECK_FAULTS = [("attack", *f) for f in ATTACK_FAULTS] + [("defense", *f) for f in DEFENSE_FAULTS]


@pytest.mark.parametrize(("kind", "name", "message"), CHECK_FAULTS, ids=[f"{k}-{n}" for k, n, _ in CHECK_FAULTS])
def test_the_contract_checks_catch_the_fault(victim: Victim, kind: str, name: str, message: str) -> None:
    check = check_attack if kind == "attack" else check_defense
    with pytest.raises(AssertionError) as err:
        check(name, victim, params={})
    text = str(err.value)
    assert f"{kind} '{name}' {ORIGIN}" in text and message in text, text


def test_an_unregistered_class_is_named_by_its_module(victim: Victim) -> None:
    with pytest.raises(AssertionError, match=r"attack 'BeyondEpsilon' \(not installed \(module .*test_plugin_faults\)\)"):
        check_attack(BeyondEpsilon, victim)


# -- at run time ---------------------------------------------------------------------------------

RUN_FAULTS = ["raises", "wrong-shape", "not-a-tensor", "out-of-range", "beyond-eps", "non-finite"]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    results = tmp_path_factory.mktemp("faulty") / "results"
    attacks = ",".join(["center", *RUN_FAULTS])
    args = [*FAST, "--set", f"attacks=[{attacks}]", "--set", "defenses=[none,fit-raises]"]
    result = invoke("run", *args, "--results-dir", str(results), "--quiet", "--no-report")
    return results, result


def test_each_faulty_cell_fails_naming_the_plugin_and_its_distribution(faulty_run) -> None:
    results, result = faulty_run
    assert result.exit_code == 1, result.output
    failed = {f["cell_id"]: f for f in json.loads((results / "smoke" / "run.json").read_text())["failed"]}
    for name, (_, message) in zip(RUN_FAULTS, [f for f in ATTACK_FAULTS if f[0] in RUN_FAULTS]):
        cell = f"shapes-tiny-dpsh-smallcnn-16-none-{name}-s0"
        assert failed[cell]["stage"] == "attack"
        assert f"attack '{name}' {ORIGIN}" in failed[cell]["error"] and message in failed[cell]["error"]
    for attack in ["clean", "center", *RUN_FAULTS]:  # every cell of the broken defense
        error = failed[f"shapes-tiny-dpsh-smallcnn-16-fit-raises-{attack}-s0"]["error"]
        assert f"defense 'fit-raises' {ORIGIN} raised RuntimeError in fit: out of patience" in error


def test_the_cells_of_sound_plugins_are_kept(faulty_run) -> None:
    results, result = faulty_run
    done = {r["cell_id"] for r in read_records("smoke", results) if r.get("status", "ok") == "ok"}
    assert done == {"shapes-tiny-dpsh-smallcnn-16-none-clean-s0", "shapes-tiny-dpsh-smallcnn-16-none-center-s0"}
    output = " ".join(result.output.split())
    assert "kaboom [/x] <b>" in output  # printed as text, not read as terminal markup


# -- a plugin that fails to import -----------------------------------------------------------------

@pytest.fixture
def broken_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A distribution on sys.path (not installed) whose attack module raises at import, and fresh
    registries that discover it."""
    info = tmp_path / "faulty_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: faulty-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[hashbench.attacks]\nneeds-driver = faulty_dist_attack:Attack\n../escape = faulty_dist_attack:Attack\n")
    (tmp_path / "faulty_dist_attack.py").write_text('raise RuntimeError("needs a GPU driver [v550]")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh = Registry("attack", "hashbench.attacks", Attack)
    monkeypatch.setattr(plugins, "attacks", fresh)
    monkeypatch.setitem(plugins.BY_KIND, "attacks", fresh)
    yield


def test_a_plugin_that_fails_to_import_is_listed_with_its_distribution(broken_distribution) -> None:
    result = invoke("list", "attacks", env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if " needs-driver " in line)
    assert "faulty-dist 1.0" in row and "failed to load: RuntimeError: needs a GPU driver [v550]" in row
    assert "center" in result.output  # the others are listed as usual


def test_a_plugin_that_fails_to_import_does_not_stop_other_runs(broken_distribution, tmp_path: Path) -> None:
    result = invoke("run", *FAST, "--results-dir", str(tmp_path / "ok"), "--quiet", "--no-report")
    assert result.exit_code == 0, result.output
    used = invoke("run", *FAST, "--set", "attacks=[needs-driver]", "--results-dir", str(tmp_path / "bad"), "--quiet")
    assert_clear_error(used, "attack plugin 'needs-driver' from distribution faulty-dist 1.0 failed to load: "
                             "RuntimeError: needs a GPU driver [v550]")
    assert not (tmp_path / "bad").exists()


def test_a_plugin_name_that_would_make_a_path_is_refused(broken_distribution) -> None:
    with pytest.raises(PluginError, match=r"'\.\./escape' from distribution faulty-dist 1.0 failed to load: the name"):
        plugins.attacks.get("../escape")
    with pytest.raises(PluginError, match="the name 'a/b' is not allowed"):
        plugins.attacks.register("a/b", DoesNothing)

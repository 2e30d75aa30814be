"""The contract sweep: every registered attack and defense, built-in or from an installed
distribution, on a tiny trained victim with the ``smoke`` profile's parameters.

A plugin registered by any distribution is picked up here without editing this file.
"""

from __future__ import annotations

import pytest

from hashbench import plugins
from hashbench.testing import Victim, check_attack, check_defense, tiny_victim

ATTACKS = plugins.attacks.names()
DEFENSES = plugins.defenses.names()


@pytest.fixture(scope="module")
def victim() -> Victim:
    return tiny_victim()


def test_the_victim_has_learned_something(victim: Victim) -> None:
    chance = float((victim.dataset.labels[victim.split.query] @ victim.dataset.labels[victim.split.database].T > 0).mean())
    assert victim.clean_map > chance + 0.05
    assert 0 <= victim.clean_t_map < victim.clean_map


def test_the_sweep_covers_the_builtins() -> None:
    assert "center" in ATTACKS
    assert {"none", "cgat"} <= set(DEFENSES)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_keeps_the_contract(name: str, victim: Victim) -> None:
    result = check_attack(name, victim)
    if result.targeted:
        assert result.adv_t_map > result.clean_t_map
    else:
        assert result.adv_map < result.clean_map
    cls = plugins.attacks.get(name)
    if cls.bounded is True:
        assert result.linf_max <= plugins.attacks.create(name).params.epsilon + 1e-5


@pytest.mark.parametrize("name", DEFENSES)
def test_defense_keeps_the_contract(name: str, victim: Victim) -> None:
    result = check_defense(name, victim)
    assert result.identity == plugins.defenses.get(name).identity
    assert result.identity or result.inference_time or result.loss_calls > 0
    assert result.inference_time == plugins.defenses.get(name).inference_time
    assert 0 <= result.defended_map <= 1

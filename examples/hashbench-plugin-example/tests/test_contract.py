"""The plugin's own CI: hashbench's contract checks, with parameters small enough for a CPU."""

from hashbench.testing import check_attack, check_defense, tiny_victim


def test_fgsm_keeps_the_attack_contract():
    result = check_attack("fgsm", tiny_victim(), params={})
    assert result.adv_map < result.clean_map
    assert result.linf_max <= 8 / 255 + 1e-6


def test_noise_aug_keeps_the_defense_contract():
    result = check_defense("noise-aug", tiny_victim(), params={"epochs": 1})
    assert result.loss_calls > 0

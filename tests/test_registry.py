import importlib.metadata as md

import pytest

from hashbench import plugins
from hashbench.api.attack import Attack
from hashbench.api.registry import Registry
from hashbench.errors import ConfigError, PluginError


def test_builtins_are_registered_through_entry_points():
    assert "dpsh" in plugins.methods.names()
    assert {"none", "cgat"} <= set(plugins.defenses.names())
    assert "center" in plugins.attacks.names()
    assert {"smallcnn", "alexnet", "vgg11"} <= set(plugins.backbones.names())
    dist, version = plugins.attacks.origin("center")
    assert dist == "hashbench" and version == md.version("hashbench")


def test_info_shows_description_and_paper():
    info = plugins.attacks.info("center")
    assert info.kind == "attack" and info.error is None
    assert "WWW 2023" in info.paper and info.description


def test_unknown_name_suggests_close_matches():
    with pytest.raises(PluginError, match=r"unknown attack 'centre'\. Did you mean 'center'\?"):
        plugins.attacks.get("centre")


def test_create_validates_params_with_paper_defaults():
    attack = plugins.attacks.create("center", {})
    assert attack.params.epsilon == pytest.approx(8 / 255)
    assert attack.params.iterations == 100
    with pytest.raises(ConfigError, match="unknown key 'itrations'"):
        plugins.attacks.create("center", {"itrations": 3})
    with pytest.raises(ConfigError, match="'epsilon'"):
        plugins.attacks.create("center", {"epsilon": -0.1})


def _fake_entry_point(name: str, value: str) -> md.EntryPoint:
    return md.EntryPoint(name=name, value=value, group="hashbench.attacks")


def test_broken_plugin_is_isolated_and_reported(monkeypatch):
    reg = Registry("attack", "hashbench.attacks", Attack)
    good = _fake_entry_point("center", "attacks.center:CenterAttack")
    broken = _fake_entry_point("broken", "no_such_module_hashbench:Thing")
    monkeypatch.setattr(md, "entry_points", lambda group: [good, broken])
    assert reg.names() == ["broken", "center"]
    assert reg.get("center").name == "center"  # the good one still loads
    with pytest.raises(PluginError, match="'broken' .* failed to load: ModuleNotFoundError"):
        reg.get("broken")
    info = reg.info("broken")
    assert info.error is not None and "ModuleNotFoundError" in info.error


def test_entry_point_must_subclass_the_kind_base(monkeypatch):
    reg = Registry("attack", "hashbench.attacks", Attack)
    monkeypatch.setattr(md, "entry_points", lambda group: [_fake_entry_point("wrong", "defenses.none:NoDefense")])
    with pytest.raises(PluginError, match="must be a subclass of hashbench.api.attack.Attack"):
        reg.get("wrong")


def test_lazy_discovery_does_not_import(monkeypatch):
    reg = Registry("attack", "hashbench.attacks", Attack)
    monkeypatch.setattr(md, "entry_points", lambda group: [_fake_entry_point("later", "no_such_module_hashbench:X")])
    assert "later" in reg  # listed without importing: no error yet


def test_freeze_forbids_registration():
    reg = Registry("attack", "hashbench.attacks", Attack)
    reg.freeze()
    with pytest.raises(PluginError, match="frozen"):
        reg.register("x", Attack)

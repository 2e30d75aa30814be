import pytest
import torch

from hashbench import plugins
from hashbench.errors import ConfigError, UserError
from hashbench.models import HashModel


def test_hash_model_outputs_and_normalisation_inside():
    net = plugins.backbones.create("smallcnn", {"width": 4, "features": 16}).build(32)
    model = HashModel(net, 12).eval()
    x = torch.rand(3, 3, 32, 32)
    u = model(x)
    assert u.shape == (3, 12) and u.abs().max() < 1
    assert torch.allclose(model(x, alpha=0.5), torch.tanh(0.5 * torch.atanh(u)), atol=1e-5)
    assert model.hash_layer.bias.abs().max() == 0
    assert "mean" not in model.state_dict()  # normalisation constants are not weights


@pytest.mark.parametrize("arch", ["alexnet", "vgg11"])
def test_torchvision_backbones_from_scratch_at_small_size(arch):
    net = plugins.backbones.create(arch, {"pretrained": "none"}).build(64)
    assert net.out_features == 4096
    assert HashModel(net, 16).eval()(torch.rand(1, 3, 64, 64)).shape == (1, 16)


def test_offline_imagenet_weights_give_a_clear_error(monkeypatch):
    from torchvision.models import AlexNet_Weights

    def offline(self, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(type(AlexNet_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent-hub")
    with pytest.raises(UserError, match="--pretrained none"):
        plugins.backbones.create("alexnet", {}).build(224)


def test_local_weights_file(tmp_path):
    from torchvision.models import alexnet

    reference = alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(reference.state_dict(), path)
    net = plugins.backbones.create("alexnet", {"pretrained": str(path)}).build(224)
    assert torch.equal(net.head[1].weight, reference.classifier[1].weight)
    with pytest.raises(ConfigError, match="does not exist"):
        plugins.backbones.create("alexnet", {"pretrained": str(tmp_path / "missing.pth")}).build(224)


def test_pickled_weights_file_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"net": torch.nn.Linear(2, 2)}, path)  # a whole module: needs unpickling of code objects
    with pytest.raises(UserError, match="cannot read"):
        plugins.backbones.create("alexnet", {"pretrained": str(path)}).build(224)

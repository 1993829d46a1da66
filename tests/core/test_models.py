import pytest
import torch

from core.config import PRESETS, preset
from core.models import build_model, count_parameters
from core.models.mlp import EmbedMLP
from core.models.unet import UNet


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_model_of_the_right_shape(name):
    cfg = preset(name, {"data_dir": "/tmp"} if name == "folder" else {})
    model = build_model(cfg).eval()
    x = torch.randn(2, *cfg.sample_shape)
    with torch.no_grad():
        out = model(x, torch.tensor([0, cfg.T - 1]))
    assert out.shape == x.shape


@pytest.mark.parametrize(
    "kw",
    [
        dict(image_size=28, in_channels=1, channel_mult=(1, 2, 2), patch=1),
        dict(image_size=28, in_channels=1, channel_mult=(1, 2), patch=2, attn_resolutions=(7,)),
        dict(image_size=32, in_channels=3, channel_mult=(1, 2, 2, 2), patch=1, attn_resolutions=(8,)),
        dict(image_size=32, in_channels=1, channel_mult=(1, 2), patch=4),
    ],
)
def test_unet_shapes_and_gradients(kw):
    net = UNet(channels=8, num_res_blocks=1, dropout=0.1, **kw)
    x = torch.randn(3, kw["in_channels"], kw["image_size"], kw["image_size"], requires_grad=True)
    out = net(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_unet_uses_the_timestep():
    net = UNet(channels=8, channel_mult=(1, 2), num_res_blocks=1, patch=2)
    for p in net.parameters():  # undo the zero-init of output layers so t can show
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 1, 28, 28)
    assert not torch.allclose(net(x, torch.tensor([5])), net(x, torch.tensor([900])))


def test_unet_attention_only_where_asked():
    with_attn = UNet(channels=8, channel_mult=(1, 2), num_res_blocks=1, patch=2, attn_resolutions=(7,))
    without = UNet(channels=8, channel_mult=(1, 2), num_res_blocks=1, patch=2)
    assert count_parameters(with_attn) > count_parameters(without)


def test_unet_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="cannot be halved"):
        UNet(image_size=28, channel_mult=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="not divisible by patch"):
        UNet(image_size=28, patch=3)


def test_classic_preset_is_the_known_recipe():
    cfg = preset("classic")
    net = build_model(cfg)
    assert (cfg.channels, cfg.channel_mult, cfg.num_res_blocks, cfg.attn_resolutions) == (96, (1, 2, 2), 2, ())
    assert (cfg.T, cfg.schedule, cfg.objective, cfg.loss, cfg.lr, cfg.batch_size) == (500, "linear", "eps", "l2", 5e-4, 64)
    assert cfg.steps * cfg.batch_size == pytest.approx(10 * 60_000, rel=0.001)
    assert 5e6 < count_parameters(net) < 2e7


def test_mlp_embed_has_one_step_embedding_per_layer():
    net = build_model(preset("scurve-seed"))
    assert isinstance(net, EmbedMLP) and len(net.layers) == 3
    assert [tuple(layer.lin.weight.shape) for layer in net.layers] == [(128, 2), (128, 128), (128, 128)]
    assert [tuple(layer.embed.weight.shape) for layer in net.layers] == [(100, 128)] * 3
    embeds = [layer.embed.weight for layer in net.layers]
    assert len({e.data_ptr() for e in embeds}) == 3, "each layer has an embedding of its own"
    assert tuple(net.out.weight.shape) == (2, 128)

    # A step's output depends on that step's row of each embedding, and on no other row.
    x, t = torch.randn(4, 2), torch.tensor([0, 5, 5, 99])
    out = net(x, t)
    out.square().sum().backward()
    for e in embeds:
        used = e.grad.abs().sum(1) > 0
        assert used.nonzero().flatten().tolist() == [0, 5, 99]
    with torch.no_grad():
        before = net(x, t)
        net.layers[1].embed.weight[5] += 1.0  # moving layer 1's row for step 5 moves only those samples
        after = net(x, t)
    moved = (after - before).abs().sum(1) > 0
    assert moved.tolist() == [False, True, True, False]


def test_sinusoidal_time_features_are_the_network_of_before():
    """The default adds no weights and no random draws: checkpoints written before time
    features were a choice load, and a seed builds the same network."""
    from core.models.time_features import timestep_embedding

    cfg = preset("smoke")
    torch.manual_seed(0)
    net = build_model(cfg)
    assert not [k for k in net.state_dict() if k.startswith("time_features")]
    torch.manual_seed(0)
    again = UNet(image_size=28, in_channels=1, channels=8, channel_mult=(1, 2), num_res_blocks=1, patch=2)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    t = torch.tensor([0, 7, 49])
    assert torch.equal(net.time_features(t), timestep_embedding(t, 8))


@pytest.mark.parametrize("kind", ["random_fourier", "learned_fourier"])
def test_fourier_time_features(kind):
    cfg = preset("smoke", {"time_embedding": kind})
    net = build_model(cfg)
    f = net.time_features
    freqs = net.state_dict()["time_features.freqs"]  # in the checkpoint either way: it is the run's draw
    assert freqs.shape == (cfg.channels // 2,)
    t = torch.tensor([0, 25])
    emb = f(t)
    # cos and sin of 2 pi f t / T, by hand for t = 25 of T = 50: 2 pi f / 2 = pi f
    assert torch.allclose(emb[1], torch.cat([torch.cos(torch.pi * freqs), torch.sin(torch.pi * freqs)]), atol=1e-5)
    assert torch.equal(emb[0], torch.cat([torch.ones(4), torch.zeros(4)]))
    x = torch.randn(2, *cfg.sample_shape)
    net(x, t).square().mean().backward()
    trained = [n for n, p in net.named_parameters() if n.startswith("time_features")]
    assert trained == (["time_features.freqs"] if kind == "learned_fourier" else [])
    if kind == "learned_fourier":
        assert f.freqs.grad is not None


def test_a_self_conditioned_unet_takes_its_estimate_beside_x_t():
    torch.manual_seed(0)
    net = build_model(preset("smoke", {"self_condition": "true"})).eval()
    assert net.stem.in_channels == 2 * 1 * 2 * 2  # x_t and the estimate, each folded by patch 2
    for p in net.parameters():  # past the zero-initialised layers, so the estimate reaches the output
        torch.nn.init.normal_(p, std=0.05)
    x, t, est = torch.randn(2, 1, 28, 28), torch.tensor([3, 40]), torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = net(x, t, None, est)
        assert out.shape == x.shape
        assert torch.equal(net(x, t), net(x, t, None, torch.zeros_like(x)))  # no estimate: zeros
        assert not torch.allclose(out, net(x, t))


def test_a_learned_variance_unet_outputs_twice_the_channels():
    for over, channels in (({"learned_variance": "true"}, 2), ({"learned_variance": "true", "patch": "1"}, 2), ({}, 1)):
        net = build_model(preset("smoke", over))
        out = net(torch.randn(2, 1, 28, 28), torch.tensor([0, 9]))
        assert out.shape == (2, channels, 28, 28)

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from search_spaces import (
    ConvNetSpec, SpecError, build_convnet, convnet_720, count_flops, count_params, feature_dim,
)


def test_720_specs_unique_ids_round_trip_and_fixed_order():
    specs = convnet_720()
    assert len(specs) == 720
    ids = [s.id for s in specs]
    assert len(set(ids)) == 720
    assert all(ConvNetSpec.from_id(i) == s for i, s in zip(ids, specs))
    assert ids[0] == "w32-d1-sigmoid-none-none" and ids[-1] == "w256-d4-leakyrelu-groupnorm-avgpooling"
    assert len(convnet_720(widths=(8, 16))) == 360


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32)])
def test_all_720_build_forward_backward(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    for spec in convnet_720():
        model = build_convnet(spec, shape[1], shape[2], 10)
        feats = model.features(x)
        assert feats.shape == (2, feature_dim(spec, shape[1], shape[2])), spec.id
        out = model.classifier(feats)
        assert out.shape == (2, 10), spec.id
        out.sum().backward()
        assert model.features[0].weight.grad is not None, spec.id
        assert sum(p.numel() for p in model.parameters()) == count_params(spec, shape[1], shape[2], 10), spec.id


def test_default_convnet_matches_dataset_condensation():
    model = build_convnet(ConvNetSpec(), 3, 32, 10)
    assert sum(p.numel() for p in model.parameters()) == 320_010
    assert model.classifier.in_features == 2048
    assert isinstance(model.classifier, nn.Linear)
    # single-channel 28x28: first conv pads by 3 so the maps are 32x32, as in Dataset Condensation
    grey = build_convnet(ConvNetSpec(), 1, 28, 10)
    assert grey.features[0].padding == (3, 3)
    assert grey.classifier.in_features == 2048


@pytest.mark.parametrize(
    "field,value,layer",
    [
        ("norm", "batchnorm", nn.BatchNorm2d),
        ("norm", "layernorm", nn.LayerNorm),
        ("norm", "instancenorm", nn.GroupNorm),
        ("norm", "groupnorm", nn.GroupNorm),
        ("act", "sigmoid", nn.Sigmoid),
        ("act", "relu", nn.ReLU),
        ("act", "leakyrelu", nn.LeakyReLU),
        ("pool", "maxpooling", nn.MaxPool2d),
        ("pool", "avgpooling", nn.AvgPool2d),
    ],
)
def test_each_choice_gives_documented_layer(field, value, layer):
    spec = ConvNetSpec(**{**ConvNetSpec().as_params(), field: value})
    model = build_convnet(spec, 3, 32, 10)
    found = [m for m in model.features if isinstance(m, layer)]
    assert len(found) == spec.depth
    if value == "instancenorm":
        assert found[0].num_groups == found[0].num_channels == 128
    if value == "groupnorm":
        assert found[0].num_groups == 4
    if value == "layernorm":
        assert tuple(found[0].normalized_shape) == (128, 32, 32)
    if value == "leakyrelu":
        assert found[0].negative_slope == 0.01


def test_none_choices_add_no_layer():
    model = build_convnet(ConvNetSpec(norm="none", pool="none", depth=2), 3, 32, 10)
    kinds = [type(m) for m in model.features]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Flatten]


@pytest.mark.parametrize("spec_id", ["w128-d3-relu-instancenorm-avgpooling", "w32-d4-sigmoid-none-none",
                                     "w64-d2-leakyrelu-layernorm-maxpooling"])
def test_flops_match_torch_flop_counter(spec_id):
    spec = ConvNetSpec.from_id(spec_id)
    model = build_convnet(spec, 1, 28, 10)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 28, 28))
    assert counter.get_total_flops() == count_flops(spec, 1, 28, 10)


@pytest.mark.parametrize(
    "bad,match",
    [
        ("w128-d3-relu-instancenorm", "cannot parse"),
        ("w128-d3-tanh-instancenorm-avgpooling", "unknown act 'tanh'"),
        ("w128-d3-relu-weirdnorm-avgpooling", "unknown norm"),
        ("w128-d3-relu-instancenorm-sumpooling", "unknown pool"),
        ("wX-d3-relu-instancenorm-avgpooling", "cannot parse"),
        ("w0-d3-relu-instancenorm-avgpooling", "width must be a positive int"),
        ("w6-d3-relu-groupnorm-avgpooling", "divisible by 4"),
    ],
)
def test_invalid_specs_raise_clear_errors(bad, match):
    with pytest.raises(SpecError, match=match):
        ConvNetSpec.from_id(bad)


def test_pooling_that_vanishes_is_refused():
    with pytest.raises(SpecError, match="pooling shrinks the map to zero"):
        build_convnet(ConvNetSpec(depth=4), 1, 8, 10)


def test_seeded_build_equals_manual_seed_and_leaves_global_rng_alone():
    spec = ConvNetSpec(width=8, depth=2, norm="layernorm")
    torch.manual_seed(7)
    expected = build_convnet(spec, 1, 28, 10).state_dict()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    seeded = build_convnet(spec, 1, 28, 10, seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)  # global stream untouched
    assert expected.keys() == seeded.keys()
    assert all(torch.equal(expected[k], seeded[k]) for k in expected)
    other = build_convnet(spec, 1, 28, 10, seed=8).state_dict()
    assert not torch.equal(other["features.0.weight"], seeded["features.0.weight"])

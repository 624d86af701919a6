import torch

from quantscan.models import SweepNet, build_model


def test_parameter_count_matches_seed_000_table_1():
    model = SweepNet()
    assert sum(p.numel() for p in model.parameters()) == 9_700
    per_layer = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name, _ in SweepNet.LAYERS
    }
    assert per_layer == {
        "sweepnet_first_conv": 160,
        "sweepnet_second_conv": 4_128,
        "sweepnet_third_conv": 4_128,
        "se_block_first_conv": 66,
        "se_block_second_conv": 96,
        "sweepnet_first_dense": 1_056,
        "sweepnet_second_dense": 66,
    }


def test_forward_any_image_size_and_named_activations():
    model = build_model({"name": "sweepnet", "n_classes": 2})
    for shape in [(3, 1, 128, 128), (2, 1, 64, 32)]:
        assert model(torch.rand(shape)).shape == (shape[0], 2)
    assert isinstance(model.se_block_second_activation, torch.nn.Sigmoid)
    for _, act in SweepNet.LAYERS[:-1]:
        assert hasattr(model, act)

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


def test_maxpool_inference_path_equals_the_library_kernel_and_exports_as_maxpool(tmp_path):
    from quantscan.models.sweepnet import MaxPool2x2

    pool = MaxPool2x2()
    x = torch.randn(3, 4, 9, 7)
    with torch.no_grad():
        fast = pool(x)
    assert torch.equal(fast, torch.nn.functional.max_pool2d(x, 2, stride=1))
    cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(pool(cl), fast)
    # training keeps the library kernel: the gradient goes to the first maximum only
    x = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], requires_grad=True)
    pool(x).sum().backward()
    assert x.grad.tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]

    model = SweepNet().eval()
    with torch.no_grad():
        a = model(torch.rand(2, 1, 16, 16))
    assert a.shape == (2, 2)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.rand(1, 1, 16, 16),), str(path), dynamo=False)
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MaxPool" in ops and "Max" not in ops

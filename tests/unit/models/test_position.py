import pytest
import torch

from quantscan.models.position import PositionNet


def test_shapes_and_parameter_count():
    model = PositionNet(columns=84, n_bins=21, in_channels=3, filters=32, hidden=64)
    out = model(torch.rand(5, 3, 20, 84))
    assert out.shape == (5, 22)
    # trunk 3 x conv 2x2 + head (2 x 32 filters x 78 columns -> 64 -> 22)
    trunk = (3 * 4 * 32 + 32) + 2 * (32 * 4 * 32 + 32)
    head = (2 * 32 * 78 * 64 + 64) + (64 * 22 + 22)
    assert sum(p.numel() for p in model.parameters()) == trunk + head
    # the haplotype axis is free, the column axis is fixed by the Flatten
    assert model(torch.rand(2, 3, 9, 84)).shape == (2, 22)
    with pytest.raises(ValueError, match="columns"):
        model(torch.rand(2, 3, 20, 80))
    with pytest.raises(ValueError, match="exceed depth"):
        PositionNet(columns=3)


def test_seeded_forward_is_reproducible_and_position_dependent():
    torch.manual_seed(0)
    a = PositionNet(columns=16, n_bins=5, in_channels=1, filters=4, hidden=8).eval()
    torch.manual_seed(0)
    b = PositionNet(columns=16, n_bins=5, in_channels=1, filters=4, hidden=8).eval()
    x = torch.rand(3, 1, 10, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        # a pattern moved along the columns changes the output (no global pool over columns)
        shifted = torch.roll(x, 4, dims=3)
        assert not torch.allclose(a(x), a(shifted))

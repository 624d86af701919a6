import numpy as np
import pytest
import torch
from Bio.Seq import Seq

from quantscan.apps.viral.onehot import decode, encode
from quantscan.augment import SequenceAugment, build_augment
from quantscan.errors import ConfigError
from quantscan.train import TrainConfig, fit


def random_records(n, lo, hi, seed):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGTN"), rng.integers(lo, hi + 1))) for _ in range(n)]


def test_reverse_complement_reads_the_other_strand_and_keeps_the_padding():
    seqs = ["ACGTTNGA", "GGGCA", "T" * 12]
    x = encode(seqs, 12)
    out = SequenceAugment(reverse_complement=1.0)(x, np.random.default_rng(0))
    for s, o in zip(seqs, out, strict=True):
        assert decode(o) == str(Seq(s).reverse_complement())
        assert not o[:, len(s) :].any()  # zero padding after the record, as before
    assert out.dtype == x.dtype and out.shape == x.shape
    assert decode(x[0]) == seqs[0]  # the input is left as it was


def test_crops_are_windows_of_the_record_moved_to_the_start():
    seqs = random_records(200, 20, 60, seed=1)
    x = encode(seqs, 64)
    out = SequenceAugment(crop=1.0, min_length=10)(x, np.random.default_rng(2))
    lengths = []
    for s, o in zip(seqs, out, strict=True):
        w = decode(o)
        assert w in s and 10 <= len(w) <= len(s)
        assert not o[:, len(w) :].any() and o[:, : len(w)].sum() == len(w)
        lengths.append(len(w) / len(s))
    # lengths spread over the range rather than all full or all minimal
    assert 0.3 < np.mean(lengths) < 0.85 and np.mean(np.array(lengths) == 1.0) < 0.2


def test_records_no_longer_than_min_length_are_not_cropped_and_empty_rows_stay_empty():
    x = encode(["ACGTACGT", "ACG", ""], 10)
    out = SequenceAugment(crop=1.0, min_length=8)(x, np.random.default_rng(0))
    assert decode(out[0]) == "ACGTACGT" and decode(out[1]) == "ACG"
    assert not out[2].any()


def test_probabilities_are_honoured_and_draws_follow_the_generator():
    seqs = random_records(400, 30, 40, seed=3)
    x = encode(seqs, 40)
    aug = SequenceAugment(reverse_complement=0.5, crop=0.25, min_length=5)
    a = aug(x, np.random.default_rng(7))
    assert np.array_equal(a, aug(x, np.random.default_rng(7)))
    assert not np.array_equal(a, aug(x, np.random.default_rng(8)))
    kept = np.mean([decode(o) == s for s, o in zip(seqs, a, strict=True)])
    assert 0.3 < kept < 0.45  # neither flipped (1/2) nor cropped (3/4): 3/8


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"crop": 1.5}, "crop"),
        ({"reverse_complement": -0.1}, "reverse_complement"),
        ({"min_length": 0}, "min_length"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_field(spec, field):
    with pytest.raises(ConfigError, match=f"augment.{field}"):
        build_augment(spec)


def test_empty_or_zero_settings_mean_no_augmentation():
    assert build_augment(None) is None and build_augment({}) is None
    assert build_augment({"crop": 0.0, "min_length": 100}) is None
    assert build_augment({"crop": 0.5}) == SequenceAugment(crop=0.5)


def test_fit_trains_on_augmented_batches_and_validates_on_the_inputs_as_they_are():
    seqs = random_records(16, 20, 30, seed=4)
    x, y = encode(seqs, 32), np.arange(16) % 2
    seen = {"train": [], "eval": []}

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(5 * 32, 2)

        def forward(self, xb):
            seen["train" if self.training else "eval"].append(xb.numpy().astype(np.uint8))
            return self.fc(xb.flatten(1))

    cfg = TrainConfig(epochs=1, batch_size=16, augment={"reverse_complement": 1.0})
    fit(Recorder(), x, y, x, y, cfg, seed=0)
    (train_batch,) = seen["train"]
    assert [decode(o) for o in train_batch] == [str(Seq(s).reverse_complement()) for s in seqs]
    assert np.array_equal(np.concatenate(seen["eval"]), x)


def test_checkpoint_keys_without_augmentation_are_those_of_earlier_versions():
    from quantscan.train import config_key

    plain = TrainConfig(epochs=3)
    assert config_key(plain) == config_key(TrainConfig(epochs=3, augment={}))
    zeros = {"crop": 0.0, "min_length": 1, "reverse_complement": 0.0}  # the schema's defaults
    assert config_key(plain) == config_key(TrainConfig(epochs=3, augment=zeros))
    assert "augment" not in config_key(plain)
    assert config_key(TrainConfig(epochs=3, augment={"crop": 0.5}))["augment"] == {"crop": 0.5}

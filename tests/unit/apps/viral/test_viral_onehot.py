"""One-hot encoding: channels, padding, dtypes, windows and combining window scores."""

import numpy as np
import pytest

from quantscan.apps.viral import onehot
from quantscan.apps.viral.fasta import Record
from quantscan.errors import ConfigError, InputFormatError


def test_channels_padding_and_layout():
    x = onehot.encode(["ACGTN", "acgtRY"], length=8)
    assert x.shape == (2, 5, 8) and x.dtype == np.uint8  # (batch, channels, positions)
    expected0 = np.zeros((5, 8), dtype=np.uint8)
    for pos, ch in enumerate([0, 1, 2, 3, 4]):
        expected0[ch, pos] = 1
    np.testing.assert_array_equal(x[0], expected0)
    # lower case as upper case; IUPAC R, Y go to channel 4
    assert x[1, :, :6].argmax(axis=0).tolist() == [0, 1, 2, 3, 4, 4]
    # zero padding past the end, exactly one channel set inside
    assert x[0, :, 5:].sum() == 0 and x[1, :, 6:].sum() == 0
    assert (x[1, :, :6].sum(axis=0) == 1).all()
    assert onehot.decode(x[1]) == "ACGTNN"


def test_u_is_t_and_records_accepted():
    x = onehot.encode([Record("r", "ACGU")], length=4, dtype=np.float32)
    assert x.dtype == np.float32
    assert x[0].argmax(axis=0).tolist() == [0, 1, 2, 3]


def test_default_length_and_float_dtype():
    x = onehot.encode(["A" * 3500, "C"], dtype="float32")
    assert x.shape == (2, 5, onehot.DEFAULT_LENGTH) and x.dtype == np.float32
    assert x[0, 0].sum() == 3500 and x[1].sum() == 1
    with pytest.raises(ConfigError, match="uint8 or float32"):
        onehot.encode(["A"], dtype=np.int64)


def test_too_long_and_invalid_characters():
    with pytest.raises(InputFormatError, match="record long: length 10 exceeds .* 8"):
        onehot.encode(["ACGT", "ACGTACGTAC"], length=8, ids=["short", "long"])
    x = onehot.encode(["ACGTACGTAC"], length=8, on_long="truncate")
    assert onehot.decode(x[0]) == "ACGTACGT"
    with pytest.raises(InputFormatError, match=r"record b: character '\*' at position 3"):
        onehot.encode(["ACGT", "AC*T"], length=8, ids=["a", "b"])


def test_window_starts_cover_the_record():
    assert onehot.window_starts(100, length=100, stride=50).tolist() == [0]
    assert onehot.window_starts(50, length=100).tolist() == [0]
    # 250 bases, windows of 100 every 60: 0, 60, 120, then one aligned to the end (150)
    assert onehot.window_starts(250, length=100, stride=60).tolist() == [0, 60, 120, 150]
    assert onehot.window_starts(200, length=100, stride=50).tolist() == [0, 50, 100]
    with pytest.raises(ConfigError):
        onehot.window_starts(300, length=100, stride=0)


def test_encode_windows_matches_slices():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTN"), size=n)) for n in (30, 100, 257)]
    w = onehot.encode_windows(seqs, length=100, stride=40)
    assert w.counts.tolist() == [1, 1, 5]  # 257: starts 0, 40, 80, 120, 157
    assert w.x.shape == (7, 5, 100)
    assert w.record.tolist() == [0, 1, 2, 2, 2, 2, 2]
    assert w.start.tolist() == [0, 0, 0, 40, 80, 120, 157]
    for i in range(7):
        s = seqs[w.record[i]][w.start[i] : w.start[i] + 100]
        np.testing.assert_array_equal(w.x[i], onehot.encode([s], length=100)[0])


def test_combine_windows():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5]])
    record = np.array([0, 1, 1, 1])
    mean = onehot.combine_windows(scores, record, 2)
    np.testing.assert_allclose(mean, [[0.9, 0.1], [1.1 / 3, 1.9 / 3]])
    mx = onehot.combine_windows(scores, record, 2, how="max")
    np.testing.assert_allclose(mx, [[0.9, 0.1], [0.5, 0.8]])
    with pytest.raises(ValueError, match="record 2 has no windows"):
        onehot.combine_windows(scores, record, 3)


def test_many_records_at_once():
    # one lookup over all records (speed: benchmarks/viral_prep.py); every base lands in its row
    rng = np.random.default_rng(1)
    seqs = [rng.choice(np.frombuffer(b"ACGT", np.uint8), size=3000).tobytes() for _ in range(500)]
    x = onehot.encode(seqs, length=3000, dtype=np.uint8)
    assert x.sum() == 500 * 3000
    rows = np.frombuffer(b"".join(seqs), np.uint8).reshape(500, 3000)
    expected = np.searchsorted(np.frombuffer(b"ACGT", np.uint8), rows)
    np.testing.assert_array_equal(x.argmax(axis=1), expected)

"""Viral split files (compact storage, one-hot on load) and building train/val/test splits."""

import copy
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from quantscan import config as qconfig
from quantscan.apps.viral import dataset, onehot
from quantscan.apps.viral.fasta import Record, read_fasta, write_fasta
from quantscan.data import load_split
from quantscan.errors import ConfigError, InputFormatError

ROOT = Path(__file__).resolve().parents[4]
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
NAMES = ["a", "b", "c"]


def random_seq(rng, n):
    return BASES[rng.integers(0, 4, n)].tobytes().decode()


def mutate(rng, seq, rate):
    s = np.frombuffer(seq.encode(), dtype=np.uint8).copy()
    hits = rng.random(s.size) < rate
    s[hits] = BASES[rng.integers(0, 4, int(hits.sum()))]
    return s.tobytes().decode()


# ----------------------------------------------------------------------------- split files


def test_roundtrip_matches_encode_and_windows(tmp_path):
    rng = np.random.default_rng(0)
    seqs = ["acgtNRYacgt", random_seq(rng, 50), "T", random_seq(rng, 23) + "nnnKM"]
    seqs.append(random_seq(rng, 131))  # longer than N = 50: windows
    labels = [0, 1, 2, 0, 1]
    info = dataset.save_onehot(
        tmp_path / "s.npz", seqs, labels, NAMES, length=50, stride=20, ids=list("vwxyz")
    )
    assert info["records"] == 5 and info["bases"] == sum(map(len, seqs))
    starts = onehot.window_starts(131, 50, 20).tolist()
    assert starts == [0, 20, 40, 60, 80, 81]
    assert info["windows"] == 4 + len(starts)
    x, y = dataset.load_onehot(tmp_path / "s.npz")
    assert x.dtype == np.uint8 and x.shape == (info["windows"], 5, 50)
    np.testing.assert_array_equal(x[:4], onehot.encode(seqs[:4], 50))
    np.testing.assert_array_equal(x[4:], onehot.encode_windows([seqs[4]], 50, 20).x)
    np.testing.assert_array_equal(y, [0, 1, 2, 0] + [1] * len(starts))
    # the generic loader dispatches on the 'onehot' key
    x2, y2 = load_split(tmp_path / "s.npz")
    np.testing.assert_array_equal(x2, x) and np.testing.assert_array_equal(y2, y)
    s = dataset.read_split(tmp_path / "s.npz")
    assert s.ids.tolist() == list("vwxyz") and s.class_names == tuple(NAMES)
    assert s.sequence(0) == "ACGTNNNACGT"  # ambiguity codes come back as N
    assert s.lengths.tolist() == [len(q) for q in seqs]
    np.testing.assert_array_equal(s.window_record, [0, 1, 2, 3] + [4] * len(starts))


def test_storage_is_compact(tmp_path):
    """About 2 bits per base for unrelated random sequences, far below the one-hot."""
    rng = np.random.default_rng(1)
    seqs = [random_seq(rng, int(n)) for n in rng.integers(300, 1000, 200)]
    info = dataset.save_onehot(tmp_path / "s.npz", seqs, [0] * 200, NAMES, length=1000)
    bits_per_base = 8 * info["file_bytes"] / info["bases"]
    assert 1.9 < bits_per_base < 2.4
    onehot_bytes = 200 * 5 * 1000  # uint8 one-hot as the model sees it
    assert info["file_bytes"] < onehot_bytes / 25


def test_empty_split_and_bad_files(tmp_path):
    dataset.save_onehot(tmp_path / "e.npz", [], [], NAMES, length=40)
    x, y = dataset.load_onehot(tmp_path / "e.npz")
    assert x.shape == (0, 5, 40) and y.shape == (0,)
    with pytest.raises(InputFormatError, match="record r1: not a nucleotide code at position 3"):
        dataset.save_onehot(
            tmp_path / "b.npz", ["ACGT", "AC-T"], [0, 1], NAMES, length=8, ids=["r0", "r1"]
        )
    with pytest.raises(InputFormatError, match="r0: empty sequence"):
        dataset.save_onehot(tmp_path / "b.npz", [""], [0], NAMES, length=8, ids=["r0"])
    assert not (tmp_path / "b.npz").exists()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputFormatError, match="junk.npz: unreadable viral split"):
        dataset.read_split(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", onehot=np.zeros(3))
    with pytest.raises(InputFormatError, match="other.npz: not a viral split file"):
        dataset.read_split(tmp_path / "other.npz")
    # a truncated payload is caught by the size checks
    dataset.save_onehot(tmp_path / "t.npz", ["ACGTACGT"], [0], NAMES, length=8)
    with np.load(tmp_path / "t.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["onehot"] = arrays["onehot"][:1]
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(InputFormatError, match="t.npz: inconsistent array sizes"):
        dataset.read_split(tmp_path / "t.npz")


# ----------------------------------------------------------------------------- splits


def families(n_fam=24, seed=3):
    """Families of 1-6 near-identical sequences (0.5 % divergence), unrelated to each other;
    family f belongs to class f % 3."""
    rng = np.random.default_rng(seed)
    records, truth = [], []
    for fam in range(n_fam):
        base = random_seq(rng, int(rng.integers(500, 900)))
        for j in range(int(rng.integers(1, 7))):
            records.append(
                Record(f"f{fam}_{j}", mutate(rng, base, 0.005), NAMES[fam % 3], source=f"src{fam}")
            )
            truth.append(fam)
    return records, np.array(truth)


def build(tmp_path, records, **kw):
    out = {s: tmp_path / f"{s}.npz" for s in ("train", "val", "test")}
    args = dict(length=600, stride=300, fractions=(0.6, 0.2, 0.2), seed=5)
    args.update(kw)
    return dataset.build_splits(records, NAMES, out, **args), out


@pytest.mark.parametrize("holdout", ["cluster", "source"])
def test_holdout_keeps_groups_in_one_split(tmp_path, holdout):
    records, truth = families()
    result, out = build(tmp_path, records, holdout=holdout, balance="none")
    split_of = {}
    for name, path in out.items():
        s = dataset.read_split(path)
        for rid in s.ids:
            assert rid not in split_of, f"{rid} in two splits"
            split_of[rid] = name
        # every window of a record is in the record's split
        assert set(np.unique(s.window_record)) == set(range(s.n_records))
    assert len(split_of) == len(records)
    for fam in np.unique(truth):
        members = {split_of[r.id] for r, t in zip(records, truth, strict=True) if t == fam}
        assert len(members) == 1, f"family {fam} spread over {members}"
    counts = {row["class"]: row for row in result.counts}
    assert counts["a"]["groups"] == 8  # 8 families per class, each one group


def test_without_holdout_families_spread(tmp_path):
    """The control of the test above: a plain split does put near-twins in different splits."""
    records, truth = families()
    result, _ = build(tmp_path, records, holdout="none", balance="none")
    spread = [len(set(result.assignment[truth == fam])) > 1 for fam in np.unique(truth)]
    assert sum(spread) >= 3


def test_plain_split_is_stratified_and_drops_flagged(tmp_path):
    rng = np.random.default_rng(4)
    records = [Record(f"r{i}", random_seq(rng, 100), NAMES[i % 3]) for i in range(60)]
    records.append(Record("bad", "", "a", status="empty", detail="empty sequence"))
    result, out = build(tmp_path, records, holdout="none", balance="none")
    for row in result.counts:
        assert row["read"] == 20 + (row["class"] == "a")
        assert row["dropped"] == (row["class"] == "a")
        assert (row["train_records"], row["val_records"], row["test_records"]) == (12, 4, 4)
        assert row["train_windows"] == 12 and row["class_weight"] == 1.0
    assert "bad" not in set(dataset.read_split(out["train"]).ids)
    assert len(result.records) == 60 and (result.assignment == "test").sum() == 12


def test_balancing_acts_on_the_training_split_only(tmp_path):
    rng = np.random.default_rng(6)
    sizes = {"a": 50, "b": 20, "c": 10}
    records = [Record(f"{c}{i}", random_seq(rng, 120), c) for c in NAMES for i in range(sizes[c])]
    result, out = build(tmp_path, records, holdout="none", balance="downsample")
    train = dataset.read_split(out["train"])
    assert np.bincount(train.labels).tolist() == [6, 6, 6]  # smallest class: 10 * 0.6
    test = dataset.read_split(out["test"])
    assert np.bincount(test.labels).tolist() == [10, 4, 2]  # natural distribution kept

    result, out = build(tmp_path, records, holdout="none", balance="resample", per_class=25)
    train = dataset.read_split(out["train"])
    assert np.bincount(train.labels).tolist() == [25, 25, 25]
    ids = train.ids[train.labels == 0]
    assert len(set(ids)) == 25  # the large class (30 in train) is subsampled, no copies
    ids_c = train.ids[train.labels == 2]
    assert len(set(ids_c)) == 6  # the small class is duplicated up to 25
    test_ids = set(dataset.read_split(out["test"]).ids)
    assert not test_ids & set(train.ids)  # copies never cross into the test split
    assert [r["train_balanced"] for r in result.counts] == [25, 25, 25]

    result, out = build(tmp_path, records, holdout="none", balance="weights")
    w = np.array(result.class_weights)
    n = np.array([30, 12, 6])
    np.testing.assert_allclose(w, n.sum() / (3 * n))
    np.testing.assert_allclose(w * n, n.sum() / 3)  # every class carries the same total weight
    with pytest.raises(ConfigError, match="balance must be one of"):
        build(tmp_path, records, balance="duplicate")


def test_resample_seed004_counts():
    labels = np.array([0] * 771 + [1] * 92 + [2] * 81 + [3] * 137)
    idx = dataset.resample(labels, 400, seed=1)
    assert np.bincount(labels[idx]).tolist() == [400] * 4
    assert np.unique(idx[labels[idx] == 0]).size == 400  # Riboviria: a random subset
    assert set(idx[labels[idx] == 2]) == set(np.flatnonzero(labels == 2))  # all kept, then copies
    np.testing.assert_array_equal(idx, dataset.resample(labels, 400, seed=1))


def test_missing_class_is_an_error(tmp_path):
    records = [Record("x", "ACGT" * 10, "a"), Record("y", "ACGT" * 10, "b")]
    with pytest.raises(InputFormatError, match=r"no usable records for classes \['c'\]"):
        build(tmp_path, records)


def test_read_records_labels_sources_and_flags(tmp_path):
    write_fasta([Record("NC_000001.1", "ACGT" * 5, description="source=fileA")], tmp_path / "a.fa")
    write_fasta(
        [
            Record("MN123.1", "ACGT" * 4 + "N"),
            Record("MN124.1", "AC*T"),
            Record("NC_000001.1", "ACG"),
        ],
        tmp_path / "b.fa",
    )
    recs = dataset.read_records({"a": tmp_path / "a.fa", "b": tmp_path / "b.fa"})
    assert [(r.label, r.source, r.status) for r in recs] == [
        ("a", "fileA", "ok"),
        ("b", "MN", "ok"),
        ("b", "MN", "invalid_char"),
        ("b", "NC_", "duplicate_id"),  # ids must be unique over all classes
    ]


def test_length_only_baseline():
    rng = np.random.default_rng(7)
    # separable lengths: the baseline is (nearly) perfect
    tl = np.concatenate([rng.integers(100, 200, 100), rng.integers(500, 600, 100)])
    ty = np.repeat([0, 1], 100)
    pred = dataset.length_only_baseline(tl, ty, [150, 550, 120, 590], 2)
    assert pred.tolist() == [0, 1, 0, 1]
    # identical length distributions: about chance
    tl = rng.integers(100, 600, 400)
    ty = rng.integers(0, 2, 400)
    test = rng.integers(100, 600, 400)
    truth = rng.integers(0, 2, 400)
    acc = (dataset.length_only_baseline(tl, ty, test, 2) == truth).mean()
    assert 0.4 < acc < 0.6


# ----------------------------------------------------------------------------- config


def default_config(*overlays):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for extra in overlays:
        cfg = merge(cfg, extra)
    return qconfig.validate(cfg, qconfig.load_schema(ROOT / "config/schema.yaml"))


def merge(a, b):
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_default_and_full_configs_pass():
    viral = default_config()["apps"]["viral"]
    dataset.check_config(viral)
    data = viral["data"]
    assert data["length"] == 500 and dataset.class_names_for(data)[2] == "Riboviria"
    # simulated lengths are scaled so every default record fits the input
    assert max(c["max_length"] for c in data["simulate"]["classes"]) <= data["length"]
    full = yaml.safe_load((ROOT / "config/presets/full.yaml").read_text())
    viral = default_config(full)["apps"]["viral"]
    dataset.check_config(viral)
    assert viral["data"]["length"] == 3500
    assert [c["n"] for c in viral["data"]["simulate"]["classes"]] == [92, 81, 771, 137]


@pytest.mark.parametrize(
    "overlay, message",
    [
        (
            {"stride": 2000},
            "apps.viral.data.stride: 2000 exceeds apps.viral.data.length 500",
        ),
        ({"source": "ncbi"}, "apps.viral.data.ncbi.email"),
        ({"source": "local"}, "need at least two classes"),
        ({"split": {"fractions": [0.9, 0.1, 0.0]}}, "test > 0"),
        (
            {"source": "local", "local": {"a-b": "x.fa", "c": "y.fa"}},
            "does not match",  # the schema's class-name pattern
        ),
    ],
)
def test_config_errors_name_the_key(overlay, message):
    """``overlay``: keys of apps.viral.data."""
    with pytest.raises(ConfigError, match=message):
        cfg = default_config({"apps": {"viral": {"data": overlay}}})
        dataset.check_config(cfg["apps"]["viral"])


# ----------------------------------------------------------------------------- download script


class FakeSnakemake:
    """The parts of the ``snakemake`` object a workflow script reads."""

    def __init__(self, tmp_path, cache):
        self.wildcards = SimpleNamespace(vclass="Anelloviridae")
        self.params = SimpleNamespace(
            query={"taxon_id": 687329, "min_length": 1000, "max_length": 3500, "max_records": 7},
            tool="quantscan-tests",
            email="tests@example.org",
            batch_size=3,
            max_retries=0,
            on_drift="error",
            cache=str(cache),
            seed=1,
        )
        self.output = SimpleNamespace(fasta=str(tmp_path / "out" / "Anelloviridae.fasta"))
        self.log = [str(tmp_path / "download.log")]
        self.threads = 1
        self.rule = "viral_download"
        self.scriptdir = str(ROOT / "workflow" / "scripts")


def test_download_script_resumes_from_the_manifest(tmp_path, monkeypatch):
    """viral_download.py against recorded NCBI answers: the key reaches Entrez but no log, the
    rerun fetches nothing (every batch verified by its checksum from the manifest)."""
    from Bio import Entrez

    from quantscan.apps.viral import ncbi

    data = ROOT / "tests" / "data" / "ncbi"
    cassette = ncbi.ReplayEntrez.from_file(data / "cassette_fresh.json")._queue
    calm = [it for it in cassette if it.get("status", 200) == 200]  # no errors: no backoff
    secret = "0123456789abcdefSECRET"
    monkeypatch.setenv("NCBI_API_KEY", secret)
    for attr in ("tool", "email", "api_key", "max_tries", "esearch", "efetch"):
        monkeypatch.setattr(Entrez, attr, getattr(Entrez, attr))
    replay = ncbi.ReplayEntrez(calm, data)
    monkeypatch.setattr(Entrez, "esearch", replay.esearch)
    monkeypatch.setattr(Entrez, "efetch", replay.efetch)
    smk = FakeSnakemake(tmp_path, tmp_path / "cache")
    script = ROOT / "workflow" / "scripts" / "viral_download.py"
    runpy.run_path(str(script), init_globals={"snakemake": smk})
    assert replay.remaining == 0 and Entrez.api_key == secret
    records = list(read_fasta(smk.output.fasta))
    assert len(records) == 7 and all(r.ok for r in records)
    manifest = tmp_path / "cache" / "Anelloviridae" / "manifest.tsv"
    assert manifest.exists() and (tmp_path / "cache" / ".download.lock").exists()
    log = Path(smk.log[0]).read_text()
    assert "API key set" in log and secret not in log and secret not in manifest.read_text()
    # rerun: nothing left to answer, everything comes from the verified batch files
    empty = ncbi.ReplayEntrez([], data)
    monkeypatch.setattr(Entrez, "esearch", empty.esearch)
    monkeypatch.setattr(Entrez, "efetch", empty.efetch)
    Path(smk.output.fasta).unlink()
    runpy.run_path(str(script), init_globals={"snakemake": smk})
    assert len(list(read_fasta(smk.output.fasta))) == 7
    assert "0 fetched, 3 verified from the cache" in Path(smk.log[0]).read_text()

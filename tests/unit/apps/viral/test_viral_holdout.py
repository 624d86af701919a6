"""Harder splits: whole taxa (header tokens or a taxonomy table) or low-identity clusters on one
side, and the background class in the training and validation splits only."""

import numpy as np
import pytest

from quantscan.apps.viral import dataset, simulate
from quantscan.apps.viral.fasta import Record
from quantscan.errors import InputFormatError

CLASSES = ["alpha", "beta"]


def taxon_records(n_taxa=6, per_taxon=5, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for c in CLASSES:
        for t in range(n_taxa):
            for i in range(per_taxon):
                s = "".join(rng.choice(list("ACGT"), int(rng.integers(80, 200))))
                out.append(Record(f"{c}_{t}_{i}", s, c, f"taxon=genus{t} source=x"))
    return out


def split_of(result):
    return dict(zip([r.id for r in result.records], result.assignment, strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_taxon_holdout_keeps_every_taxon_on_one_side(tmp_path, seed):
    records = taxon_records(seed=seed)
    out = {s: tmp_path / f"{s}.npz" for s in ("train", "val", "test")}
    result = dataset.build_splits(
        records,
        CLASSES,
        out,
        length=100,
        stride=50,
        fractions=(0.5, 0.25, 0.25),
        holdout="taxon",
        balance="none",
        seed=seed,
    )
    where = split_of(result)
    sides = {}
    for r in records:
        sides.setdefault((r.label, r.description.split()[0]), set()).add(where[r.id])
    assert all(len(s) == 1 for s in sides.values()), sides
    # every class still reaches every split (6 taxa per class, 3 splits)
    for c in CLASSES:
        assert {where[r.id] for r in records if r.label == c} == {"train", "val", "test"}
    # the same taxon name in two classes is two taxa
    assert len(sides) == 12
    # and the files hold the split's records only
    test = dataset.read_split(out["test"])
    assert sorted(test.ids.tolist()) == sorted(i for i, s in where.items() if s == "test")


def test_taxonomy_table_wins_over_header_tokens_and_missing_taxa_are_named(tmp_path):
    records = taxon_records(n_taxa=3, per_taxon=4)
    table = tmp_path / "taxa.tsv"
    # one taxon per class in the table: everything of a class on one side, whatever the tokens say
    table.write_text("id\ttaxon\textra\n" + "".join(f"{r.id}\t{r.label}_all\tz\n" for r in records))
    taxa = dataset.read_taxonomy(table)
    assert dataset.record_taxa(records[:2], taxa) == ["alpha/alpha_all"] * 2
    assert dataset.record_taxa(records[:1]) == ["alpha/genus0"]
    bad = [Record("lonely", "ACGT" * 30, "alpha", "source=x")]
    with pytest.raises(InputFormatError, match="record 'lonely'.*no taxon for holdout 'taxon'"):
        dataset.record_taxa(bad)
    (tmp_path / "bad.tsv").write_text("accession\ttaxon\nx\ty\n")
    with pytest.raises(InputFormatError, match="bad.tsv: the header needs the columns 'id'"):
        dataset.read_taxonomy(tmp_path / "bad.tsv")
    (tmp_path / "two.tsv").write_text("id\ttaxon\nx\ty\nx\tz\n")
    with pytest.raises(InputFormatError, match="two.tsv: line 3: record 'x' has two taxa"):
        dataset.read_taxonomy(tmp_path / "two.tsv")


def test_identity_threshold_and_low_identity_clusters(tmp_path):
    # Mash's model: identity p, k-mer survival p^k, Jaccard p^k / (2 - p^k)
    assert dataset.identity_threshold(1.0, 16) == 1.0
    assert dataset.identity_threshold(0.8, 10) == pytest.approx(0.8**10 / (2 - 0.8**10))
    # two simulated lineages of one class, 10 isolates each, ~10 % apart within a lineage and
    # unrelated between lineages: clusters at 80 % identity follow the lineages
    spec = simulate.ClassSpec(
        "fam", 600, 600, diversity=0.1, n_lineages=2, lineage_divergence=3.0, partial_fraction=0
    )
    recs = simulate.simulate_class(spec, 20, 3, simulate.SimulationOptions(n_run_probability=0))
    records = [Record(r.id, r.sequence, "alpha", r.description) for r in recs]
    records += [Record(f"b{i}", r.sequence[::-1], "beta") for i, r in enumerate(recs)]
    out = {s: tmp_path / f"{s}.npz" for s in ("train", "val", "test")}
    result = dataset.build_splits(
        records,
        CLASSES,
        out,
        length=600,
        stride=300,
        fractions=(0.6, 0.2, 0.2),
        holdout="cluster",
        identity=0.8,
        cluster_k=10,
        balance="none",
        seed=1,
    )
    where = split_of(result)
    by_lineage = {}
    for r in records[:20]:
        by_lineage.setdefault(r.description, set()).add(where[r.id])
    assert all(len(s) == 1 for s in by_lineage.values()), by_lineage


def test_background_class_only_in_training_and_validation(tmp_path):
    records = taxon_records()
    out = {s: tmp_path / f"{s}.npz" for s in ("train", "val", "test")}
    result = dataset.build_splits(
        records,
        CLASSES,
        out,
        length=100,
        stride=50,
        fractions=(0.5, 0.25, 0.25),
        holdout="taxon",
        balance="weights",
        background=1.5,
        seed=4,
    )
    splits = {s: dataset.read_split(p) for s, p in out.items()}
    for s in ("train", "val"):
        assert splits[s].class_names == ("alpha", "beta", "background")
        n_in = int((splits[s].labels < 2).sum())
        assert int((splits[s].labels == 2).sum()) == round(1.5 * n_in / 2)
    assert (splits["test"].labels < 2).all()
    assert len(result.class_weights) == 3 and result.counts[-1]["class"] == "background"
    assert result.counts[-1]["test_records"] == 0
    # generated from the split's own records: no test sequence is shuffled into training
    test_seqs = {splits["test"].sequence(i) for i in range(splits["test"].n_records)}
    train_bg = [splits["train"].sequence(i) for i in np.flatnonzero(splits["train"].labels == 2)]
    assert not test_seqs & set(train_bg)

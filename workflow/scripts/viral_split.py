"""Validate the classes' records, split them (stratified, optional hold-out), balance the
training split, and write the split files, a count table, the class weights and the test FASTA."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import collections
import json

from quantscan.atomic import write_text
from quantscan.scripting import run
from quantscan.seeds import derive_seed
from quantscan.viral import dataset
from quantscan.viral.fasta import ValidationRules


def main(smk, log):
    classes = list(smk.params.classes)
    cfg = smk.params.split
    records = dataset.read_records(
        dict(zip(classes, smk.input.fastas, strict=True)),
        ValidationRules(**smk.params.validation),
    )
    bad = collections.Counter((r.label, r.status) for r in records if not r.ok)
    for (label, status), n in sorted(bad.items()):
        log.warning("%s: %d records left out (%s)", label, n, status)
    result = dataset.build_splits(
        records,
        classes,
        {s: smk.output[s] for s in ("train", "val", "test")},
        length=smk.params.length,
        stride=smk.params.stride,
        fractions=cfg["fractions"],
        holdout=cfg["holdout"],
        cluster_threshold=cfg["cluster_threshold"],
        cluster_k=cfg["cluster_k"],
        balance=cfg["balance"],
        per_class=cfg["per_class"],
        seed=derive_seed(smk.params.seed, "viral-split", smk.wildcards.dataset),
        log=log,
    )
    dataset.write_split_fasta(
        [r for r, s in zip(result.records, result.assignment, strict=True) if s == "test"],
        smk.output.test_fasta,
    )
    write_text(
        smk.output.balance,
        json.dumps({"method": cfg["balance"], "class_weights": result.class_weights}) + "\n",
    )
    dataset.write_atomic_tsv(result.counts, smk.output.counts)
    log.info("class weights: %s", result.class_weights)


run(main, snakemake)

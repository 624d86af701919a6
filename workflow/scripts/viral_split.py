"""Validate the classes' records, split them (stratified, optional hold-out), add the background
class (open set) to the training and validation splits, balance the training split, and write the
split files, a count table, the class weights, the test FASTA and the out-of-class test FASTA."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import collections
import json

from quantscan.apps.viral import dataset, openset
from quantscan.apps.viral.fasta import ValidationRules, read_fasta, write_fasta
from quantscan.atomic import write_text
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    classes = list(smk.params.classes)
    cfg = smk.params.split
    osc = smk.params.openset
    records = dataset.read_records(
        dict(zip(classes, smk.input.fastas, strict=True)),
        ValidationRules(**smk.params.validation),
    )
    bad = collections.Counter((r.label, r.status) for r in records if not r.ok)
    for (label, status), n in sorted(bad.items()):
        log.warning("%s: %d records left out (%s)", label, n, status)
    seed = derive_seed(smk.params.seed, "viral-split", smk.wildcards.dataset)
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
        identity=cfg["identity"],
        taxa=dataset.read_taxonomy(cfg["taxonomy"]) if cfg["taxonomy"] else None,
        taxon_key=cfg["taxon_key"],
        balance=cfg["balance"],
        per_class=cfg["per_class"],
        background=osc["background_fraction"] if osc["background"] else None,
        seed=seed,
        log=log,
    )
    test = [r for r, s in zip(result.records, result.assignment, strict=True) if s == "test"]
    dataset.write_split_fasta(test, smk.output.test_fasta)
    # out-of-class test records: generated from the test records only, plus user files
    extra = {}
    for category, paths in osc["ood"].items():
        paths = [paths] if isinstance(paths, str) else list(paths)
        extra[category] = [r for p in paths for r in read_fasta(p, rules=ValidationRules()) if r.ok]
    ood = openset.ood_records(test, osc["ood_per_category"], seed, extra)
    write_fasta(ood, smk.output.ood_fasta)
    write_text(
        smk.output.balance,
        json.dumps({"method": cfg["balance"], "class_weights": result.class_weights}) + "\n",
    )
    dataset.write_atomic_tsv(result.counts, smk.output.counts)
    log.info("class weights: %s", result.class_weights)
    log.info(
        "out-of-class test records: %s",
        dict(collections.Counter(dataset.tokens(r.description)["category"] for r in ood)),
    )


run(main, snakemake)

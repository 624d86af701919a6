"""Simulate one viral class in silico (the offline stand-in for real data)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import dataclasses

from quantscan.apps.viral import simulate
from quantscan.apps.viral.fasta import write_fasta
from quantscan.scripting import run


def main(smk, log):
    spec = dict(smk.params.spec)
    n = spec.pop("n")
    (cls,) = simulate.classes_from_config([spec])
    opts = dict(smk.params.options)
    opts["n_run_length"] = tuple(opts["n_run_length"])
    records = simulate.simulate_class(cls, n, smk.params.seed, simulate.SimulationOptions(**opts))
    # the lineage (a genus of the family) is the record's source and taxon: hold-out by source
    # or by taxon keeps a lineage in one split
    records = [
        dataclasses.replace(r, description=f"source={lin} taxon={lin}")
        for r in records
        for lin in [f"{cls.name}_{r.description.replace('=', '')}"]
    ]
    write_fasta(records, smk.output.fasta)
    lengths = [len(r) for r in records]
    log.info("%s: %d sequences, %d-%d bp", cls.name, n, min(lengths), max(lengths))


run(main, snakemake)

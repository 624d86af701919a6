"""Gather one class's local FASTA files into one file, each record tagged with its source file."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import collections
import dataclasses
from pathlib import Path

from quantscan.apps.viral.fasta import read_class_fastas, write_fasta
from quantscan.scripting import run


def main(smk, log):
    cls = smk.wildcards.vclass
    # every record is kept (flagged ones too): viral_split validates all sources alike; the
    # source token goes last so it wins over one the file may already carry
    records = read_class_fastas({cls: list(smk.input.fastas)}, on_invalid="flag")
    records = [
        dataclasses.replace(r, description=f"{r.description} source={Path(r.source).name}".strip())
        for r in records
    ]
    write_fasta(records, smk.output.fasta)
    status = collections.Counter(r.status for r in records)
    log.info(
        "%s: %d records from %d files; status %s",
        cls,
        len(records),
        len(smk.input.fastas),
        dict(status),
    )


run(main, snakemake)

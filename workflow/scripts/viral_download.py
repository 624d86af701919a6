"""Download one class from NCBI (Bio.Entrez): frozen manifest, checksummed batches, resumable.

The API key comes from the NCBI_API_KEY environment variable only; it is never logged or written.
A lock file in the cache folder keeps downloads one at a time even without --resources ncbi=1.
"""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import fcntl
from pathlib import Path

from quantscan.apps.viral import ncbi
from quantscan.scripting import run


def main(smk, log):
    cls = smk.wildcards.vclass
    cache = Path(smk.params.cache)
    cache.mkdir(parents=True, exist_ok=True)
    query = ncbi.Query.from_config(smk.params.query, where=f"apps.viral.data.ncbi.classes.{cls}")
    with open(cache / ".download.lock", "w") as lock:
        log.info("waiting for the NCBI download lock %s", lock.name)
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = ncbi.EntrezClient(
            smk.params.tool,
            smk.params.email,
            max_retries=smk.params.max_retries,
            seed=smk.params.seed,
            logger=log,
        )
        log.info("%s: %s (API key %s)", cls, query.term, "set" if client.has_api_key else "not set")
        result = ncbi.download_class(
            query,
            cache / cls,
            client,
            batch_size=smk.params.batch_size,
            on_drift=smk.params.on_drift,
        )
    log.info(
        "%s: %d records in %d batches (%d fetched, %d verified from the cache)",
        cls,
        result.n_records,
        len(result.batches),
        len(result.fetched),
        len(result.reused),
    )
    ncbi.assemble_fasta(cache / cls, smk.output.fasta)


run(main, snakemake)

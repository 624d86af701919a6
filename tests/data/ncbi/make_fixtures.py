"""Regenerate the NCBI replay fixtures (synthetic records in NCBI's response formats).

There is no network access to NCBI where the tests run, so these answers are written in the
formats NCBI returns (ESearch XML with its DOCTYPE; efetch FASTA with 70-column lines and a blank
line after each record) with invented accessions (prefix ZZ, not a real GenBank prefix) and random
sequences. Run from the repository root: python tests/data/ncbi/make_fixtures.py
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
TERM = "txid687329[Organism:exp] AND 1000:3500[SLEN]"
WEBENV = "MCID_6650a1b2c3d4e5f60718293a"
ACCESSIONS = [f"ZZ{100100 + i:06d}.1" for i in range(1, 8)]
COUNT = 9  # more matches than the query's max_records (7)


def esearch_xml() -> str:
    ids = "".join(f"<Id>{a}</Id>\n" for a in ACCESSIONS)
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        '<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
        '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
        f"<eSearchResult><Count>{COUNT}</Count><RetMax>{len(ACCESSIONS)}</RetMax>"
        f"<RetStart>0</RetStart><QueryKey>1</QueryKey><WebEnv>{WEBENV}</WebEnv><IdList>\n"
        f"{ids}</IdList><TranslationSet/><TranslationStack>   "
        "<TermSet>    <Term>txid687329[Organism:exp]</Term>    <Field>Organism:exp</Field>    "
        "<Count>9</Count>    <Explode>Y</Explode>   </TermSet>   "
        "<TermSet>    <Term>1000:3500[SLEN]</Term>    <Field>SLEN</Field>    <Count>0</Count>    "
        "<Explode>N</Explode>   </TermSet>   <OP>RANGE</OP>   <OP>AND</OP>  </TranslationStack>"
        "<QueryTranslation>txid687329[Organism:exp] AND 1000[SLEN] : 3500[SLEN]</QueryTranslation>"
        "</eSearchResult>\n"
    )


def fasta(records) -> str:
    out = []
    for acc, seq in records:
        out.append(f">{acc} Synthetic anellovirus isolate {acc[:-2]}, complete genome\n")
        out.extend(seq[i : i + 70] + "\n" for i in range(0, len(seq), 70))
        out.append("\n")
    return "".join(out)


def main():
    rng = random.Random(687329)
    seqs = [
        (a, "".join(rng.choice("ACGT") for _ in range(rng.randint(1000, 1500)))) for a in ACCESSIONS
    ]
    (HERE / "esearch_txid687329.xml").write_text(esearch_xml())
    batches = [seqs[0:3], seqs[3:6], seqs[6:7]]
    for b, recs in enumerate(batches):
        (HERE / f"efetch_batch_{b:05d}.fasta").write_text(fasta(recs))
    full = fasta(batches[1])
    # truncated mid-sequence by a dropped connection, still answered with HTTP 200
    (HERE / "efetch_batch_00001_truncated.fasta").write_text(full[: len(full) * 3 // 4])
    # a short batch: complete records, one missing
    (HERE / "efetch_batch_00001_short.fasta").write_text(fasta(batches[1][:2]))
    (HERE / "esearch_error.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        '<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
        '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
        "<eSearchResult><ERROR>Invalid query: unbalanced parentheses</ERROR></eSearchResult>\n"
    )

    es = {
        "util": "esearch",
        "expect": {"term": TERM, "usehistory": "y", "idtype": "acc"},
        "body_file": "esearch_txid687329.xml",
    }

    def hist(retstart, retmax, **kw):
        return {
            "util": "efetch",
            "expect": {
                "webenv": WEBENV,
                "query_key": 1,
                "retstart": retstart,
                "retmax": retmax,
                "rettype": "fasta",
            },
            **kw,
        }

    def by_id(batch, **kw):
        ids = ",".join(a for a, _ in batches[batch])
        return {"util": "efetch", "expect": {"id": ids, "rettype": "fasta"}, **kw}

    cassettes = {
        # first run: a 429 (with Retry-After) and a 500, each followed by success
        "cassette_fresh.json": [
            es,
            hist(0, 3, body_file="efetch_batch_00000.fasta"),
            hist(3, 3, status=429, headers={"Retry-After": "2"}),
            hist(3, 3, body_file="efetch_batch_00001.fasta"),
            hist(6, 1, status=500, reason="Internal Server Error"),
            hist(6, 1, body_file="efetch_batch_00002.fasta"),
        ],
        # HTTP 200 but a truncated body, then a short batch, then the full one
        "cassette_truncated.json": [
            es,
            hist(0, 3, body_file="efetch_batch_00000.fasta"),
            hist(3, 3, body_file="efetch_batch_00001_truncated.fasta"),
            hist(3, 3, body_file="efetch_batch_00001_short.fasta"),
            hist(3, 3, incomplete_read=True, body_file="efetch_batch_00001.fasta"),
            hist(3, 3, body_file="efetch_batch_00001.fasta"),
            hist(6, 1, body_file="efetch_batch_00002.fasta"),
        ],
        # batch 1 keeps failing with 503 (4 attempts with max_retries=3): the run stops
        "cassette_fail.json": [
            es,
            hist(0, 3, body_file="efetch_batch_00000.fasta"),
            *[hist(3, 3, status=503, reason="Service Unavailable") for _ in range(4)],
        ],
        # rerun after cassette_fail: only batches 1 and 2, by accession
        "cassette_resume.json": [
            by_id(1, body_file="efetch_batch_00001.fasta"),
            by_id(2, body_file="efetch_batch_00002.fasta"),
        ],
    }
    for name, interactions in cassettes.items():
        text = json.dumps({"interactions": interactions}, indent=1)
        (HERE / name).write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Read ms-style simulator output (Hudson's ms, mssel, msms, msHOT, discoal, scrm; plain or gzip):
``iter_ms`` yields one ``HaplotypeData`` per '//' replicate in constant memory, ``read_ms``
returns them all. Positions are the [0, 1] fractions times ``length``; the sample size comes from
the command line ('ms 128 1000 ...', ``_ms_header_nsam``) or the first replicate with sites.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from quantscan.errors import ConfigError, InputFormatError

from .formats import _open_binary, _read_errors
from .haplotypes import _STAT_KEYS, HaplotypeData


def _ms_header_nsam(header: list[str]) -> int | None:
    """Sample size from a command line such as 'ms 128 1000 -t 2000' or 'discoal 128 100 100000'."""
    for line in header:
        tok = line.split()
        if len(tok) >= 2 and not tok[0].lstrip("-").replace(".", "").isdigit() and tok[1].isdigit():
            return int(tok[1])
        if tok:
            return None  # the first non-blank line is the command line, or there is none
    return None


def iter_ms(
    path: str | os.PathLike,
    *,
    length: float,
    n_haplotypes: int | None = None,
) -> Iterator[HaplotypeData]:
    """Yield replicates of ms-style output one at a time (constant memory); see ``read_ms``."""
    path = Path(path)
    if not length or length <= 0:
        raise ConfigError(f"length must be > 0, got {length!r}")
    fh = io.TextIOWrapper(_open_binary(path), encoding="utf-8", newline=None)
    lineno = 0
    rep = 0

    def where():
        return f"replicate {rep}, line {lineno}" if rep else f"line {lineno}"

    def fail(msg):
        raise InputFormatError(f"{path}: {where()}: {msg}")

    def next_line():
        nonlocal lineno
        line = fh.readline()
        if not line:
            return None
        lineno += 1
        return line.strip()

    with fh, _read_errors(path, where):
        header = []
        while (line := next_line()) is not None and not line.startswith("//"):
            header.append(line)
        if line is None:
            what = "empty file" if lineno == 0 else "no '//' replicate line"
            raise InputFormatError(f"{path}: not ms output: {what}")
        nsam = n_haplotypes
        header_nsam = _ms_header_nsam(header)
        if nsam is None:
            nsam = header_nsam
        elif header_nsam is not None and header_nsam != nsam:
            raise ConfigError(
                f"{path}: n_haplotypes={nsam} but the command line says {header_nsam}"
            )
        pending: list[tuple[int, dict]] = []  # zero-site replicates seen before nsam is known

        def make(r, pos, hap, stats):
            return HaplotypeData(
                chrom=f"rep{r}",
                positions=pos * float(length),
                haplotypes=hap,
                sample_names=[f"hap{i + 1}" for i in range(hap.shape[1])],
                ploidy=1,
                length=float(length),
                source=str(path),
                stats=stats,
            )

        def empty_stats():
            return dict.fromkeys(_STAT_KEYS, 0)

        while line is not None:  # `line` is a '//' line here
            rep += 1
            while True:
                line = next_line()
                if line is None:
                    fail("file ends before the 'segsites:' line")
                if not line or line.startswith(("(", "[", "time:", "prob:")):
                    continue  # trees (-T), tree lengths (-L), probabilities (mssel/msms)
                break
            m = re.fullmatch(r"segsites:\s*(\d+)", line)
            if not m:
                fail(f"expected 'segsites: N', got {line[:60]!r}")
            segsites = int(m.group(1))
            line = next_line()
            while line == "":
                line = next_line()
            if segsites == 0:
                if line is not None and line.startswith("positions:"):
                    line = next_line()
                rows = []
            else:
                if line is None or not line.startswith("positions:"):
                    fail(f"expected 'positions:' after 'segsites: {segsites}'")
                try:
                    pos = np.array(line[len("positions:") :].split(), dtype=np.float64)
                except ValueError:
                    fail("positions line has a value that is not a number")
                if pos.size != segsites:
                    fail(f"positions line has {pos.size} values but segsites is {segsites}")
                if np.any(pos < 0) or np.any(pos > 1):
                    fail("positions must be fractions in [0, 1] (scaled by `length`)")
                if np.any(np.diff(pos) < 0):
                    fail("positions are not sorted")
                rows, first_row_line = [], lineno + 1
                while (line := next_line()) and not line.startswith("//"):
                    if len(line) != segsites:
                        fail(
                            f"haplotype {len(rows) + 1} has {len(line)} characters, "
                            f"expected segsites = {segsites}"
                        )
                    rows.append(line)
            # Skip blank lines up to the next replicate; anything else is stray text.
            while line == "":
                line = next_line()
            if line is not None and not line.startswith("//"):
                fail(f"unexpected line {line[:60]!r} (more haplotypes after a blank line?)")

            if segsites == 0:
                st = empty_stats()
                if nsam is None:
                    pending.append((rep, st))
                    continue
                yield make(rep, np.zeros(0), np.zeros((0, nsam), dtype=np.uint8), st)
                continue
            if nsam is None:
                nsam = len(rows)
                for r, st in pending:
                    yield make(r, np.zeros(0), np.zeros((0, nsam), dtype=np.uint8), st)
                pending = []
            if len(rows) != nsam:
                raise InputFormatError(
                    f"{path}: replicate {rep}, lines {first_row_line}-"
                    f"{first_row_line + len(rows) - 1}: {len(rows)} haplotype rows, expected {nsam}"
                )
            mat = np.frombuffer("".join(rows).encode("ascii", errors="replace"), dtype=np.uint8)
            mat = (mat - ord("0")).reshape(nsam, segsites)
            if mat.max(initial=0) > 1:
                k, j = (int(x[0]) for x in np.nonzero(mat > 1))
                raise InputFormatError(
                    f"{path}: replicate {rep}, line {first_row_line + k}: haplotype {k + 1}, "
                    f"site {j + 1}: character {rows[k][j]!r} is not 0 or 1"
                )
            hap = np.ascontiguousarray(mat.T)
            poly = hap.any(axis=1) & ~hap.all(axis=1)
            st = empty_stats()
            st.update(
                input_sites=segsites, kept=int(poly.sum()), monomorphic=int(segsites - poly.sum())
            )
            yield make(rep, pos[poly], hap[poly], st)
        for r, st in pending:  # every replicate had zero sites and no header gave the sample size
            yield make(r, np.zeros(0), np.zeros((0, 0), dtype=np.uint8), st)


def read_ms(
    path: str | os.PathLike, *, length: float, n_haplotypes: int | None = None
) -> list[HaplotypeData]:
    """Read every replicate of ms/mssel/msHOT/discoal/scrm output (plain or gzip).

    Positions are the [0, 1] values times ``length``; duplicates are kept. Chromosome names are
    'rep1', 'rep2', ... The haplotype count comes from ``n_haplotypes``, else the command line
    ('ms 128 1000 ...'), else the first replicate with sites; all replicates must match.
    Monomorphic columns (rare in simulator output) are dropped and counted like in ``read_vcf``.
    """
    return list(iter_ms(path, length=length, n_haplotypes=n_haplotypes))

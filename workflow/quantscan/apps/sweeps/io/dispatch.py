"""``read_haplotypes``: read any supported input, the format given or detected
(``formats.detect_format``), through its reader: ``vcf.read_vcf`` for VCF and BCF,
``ms.read_ms`` for ms-style simulator output, ``trees.read_trees`` for tskit tree sequences.
"""

from __future__ import annotations

import os

from quantscan.errors import ConfigError

from .formats import FORMATS, detect_format
from .haplotypes import HaplotypeData
from .ms import read_ms
from .trees import read_trees
from .vcf import read_vcf


def read_haplotypes(path: str | os.PathLike, fmt: str = "auto", **kw) -> list[HaplotypeData]:
    """Read any supported input; ``fmt``: 'auto' or one of ``FORMATS``; ``kw`` go to the reader."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("vcf", "bcf"):
        return read_vcf(path, **kw)
    if fmt == "ms":
        return read_ms(path, **kw)
    if fmt == "trees":
        return read_trees(path, **kw)
    raise ConfigError(f"unknown input format {fmt!r}; expected 'auto' or one of {FORMATS}")

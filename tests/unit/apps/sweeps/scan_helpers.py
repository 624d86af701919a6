"""Test data shared by the scan's unit tests: a deterministic engine, a random chromosome, a small
VCF writer, and a tiny SweepNet saved as fp32, packed (Table 6) and int8 ONNX."""

from pathlib import Path

import numpy as np
import torch

from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6
from quantscan.apps.sweeps.io import MISSING, HaplotypeData
from quantscan.compress.layers import quantize_model
from quantscan.export.onnx import build_int8
from quantscan.export.packed import save_packed
from quantscan.modelio import save_fp32
from quantscan.models import SweepNet
from quantscan.runtime import Engine

#: the tiny SweepNet of ``save_models``; its ONNX files take images of MODEL_HAPS x WIDTH
ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 8, "se_ratio": 2}
MODEL_HAPS, WIDTH = 12, 16


class MeanEngine(Engine):
    """P(sweep) grows with the window's derived-allele density (deterministic)."""

    def __init__(self):
        super().__init__("mean", 64, 1, 2)

    def _logits(self, x):
        m = x.reshape(len(x), -1).mean(axis=1)
        return np.stack([np.zeros_like(m), 12 * (m - 0.3)], axis=1)


def chromosome(n_sites=400, n_haps=10, length=40_000, seed=0, missing=0.0, chrom="chr7"):
    """Random diploid haplotypes (derived-allele frequencies from a beta), ``missing`` calls."""
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.uniform(1, length, n_sites))
    hap = (rng.random((n_sites, n_haps)) < rng.beta(0.4, 1.2, n_sites)[:, None]).astype(np.uint8)
    if missing:
        hap[rng.random(hap.shape) < missing] = MISSING
    names = [f"s{i}" for i in range(n_haps // 2)]
    return HaplotypeData(chrom, pos, hap, names, ploidy=2, length=length, source="x.vcf")


def vcf(path: Path, records, contigs=("chr1", "chr2")) -> Path:
    """A VCF with samples s1, s2 and ``records`` as (chrom, pos, gt1, gt2)."""
    head = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c},length=1000>" for c in contigs)]
    head.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    head.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2")
    body = [
        "\t".join([c, str(p), ".", "A", "T", ".", "PASS", ".", "GT", *g]) for c, p, *g in records
    ]
    path.write_text("\n".join(head + body) + "\n")
    return path


def save_models(d: Path) -> Path:
    """``model.pt`` (fp32), ``model.qsp`` (packed Table 6) and ``fp32{,.int8}.onnx`` in ``d``."""
    torch.manual_seed(0)
    m = SweepNet(filters=8, se_ratio=2).eval()
    save_fp32(m, ARCH, d / "model.pt")
    save_packed(quantize_model(m, SEED000_TABLE6), d / "model.qsp", ARCH)
    calib = (np.random.default_rng(0).random((32, 1, MODEL_HAPS, WIDTH)) < 0.3).astype(np.float32)
    build_int8(m, calib, d / "fp32.onnx", d / "fp32.int8.onnx")
    return d

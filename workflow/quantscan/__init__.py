"""quantscan: train, compress and scan with small neural networks.

The library behind the Snakemake workflow. Applications (``sweeps``, ``viral``, later ``em``) add data,
encoding, a model and a scan; training, compression, evaluation and inference engines are shared.
"""

__version__ = "0.1.0"

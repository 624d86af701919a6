"""Viral classification: sequences, one-hot windows, open-set answers and FASTA classification."""

from ...data import register_format


def _load_onehot(path):
    from .dataset import load_onehot

    return load_onehot(path)


register_format("onehot", _load_onehot)

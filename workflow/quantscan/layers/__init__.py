"""Layers with faster CPU training kernels, used by the models (``quantscan.models``) and by the
compression's quantized layers: ``conv1d.Conv1d`` (``nn.Conv1d`` whose backward runs as forward
convolutions) and ``maxpool.max_pool_2x2`` (SweepNet's 2 x 2 stride-1 max-pool, compiled kernels).
Both match PyTorch's own layers to first and second order and export to ONNX as PyTorch's."""

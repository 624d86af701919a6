"""Make the library importable from a checkout without installing it, and keep torch to few threads."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import torch  # noqa: E402

torch.set_num_threads(1)

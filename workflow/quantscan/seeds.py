"""Seeds derived from one master seed and a job's wildcards.

Every random draw in the workflow comes from ``derive_seed(master, *keys)``: the same master seed and
wildcards give the same stream on a laptop or on a cluster node, and different jobs never share a stream.
"""

import hashlib


def derive_seed(master: int, *keys: object) -> int:
    """A 32-bit seed (1 .. 2**32 - 1; msprime rejects 0) from the master seed and any keys."""
    text = "\x1f".join([str(int(master)), *(str(k) for k in keys)])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**32 - 1) + 1

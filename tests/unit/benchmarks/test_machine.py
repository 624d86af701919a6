"""The machine description the benchmarks write beside their numbers (``benchmarks/machine.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import machine  # noqa: E402

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
cpu MHz\t\t: 2596.132
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
flags\t\t: fpu avx2
"""


def test_cpu_identity_reads_the_first_cpu():
    got = machine.cpu_identity(CPUINFO)
    assert got == {
        "family": 25,
        "model_number": 17,
        "stepping": 1,
        "mhz": 2596.132,
        "isa": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"],
    }


def test_cpu_identity_of_text_without_the_fields_is_empty():
    assert machine.cpu_identity("processor\t: 0\nvendor_id\t: Foo\n") == {}

"""Model files that declare a huge architecture fail fast with a named error, before allocating.

Each hostile file is small on disk; loading it runs in a subprocess limited to 2 GB of address
space (``RLIMIT_AS``), so a loader that builds the declared model first dies of MemoryError (or a
torch allocation error) instead of printing the InputFormatError the test expects.
"""

import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
import torch

from quantscan import modelio
from quantscan.errors import InputFormatError
from quantscan.export import packed as pack
from quantscan.models import MAX_PARAMETERS, SweepNet, build_model, state_nbytes, validate_arch

SMALL = {"name": "sweepnet", "filters": 4}

#: load ``argv[2]`` with ``argv[1]`` ("fp32" or "packed") under a 2 GB address-space limit; print
#: the error and the growth of the peak resident set (MB)
LOADER = textwrap.dedent(
    """
    import resource, sys
    limit = 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch
    torch.set_num_threads(1)
    from quantscan.export.packed import load_packed
    from quantscan.errors import InputFormatError
    from quantscan.modelio import load_fp32
    load = {"fp32": load_fp32, "packed": load_packed}[sys.argv[1]]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load(sys.argv[2])
    except InputFormatError as err:
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
        print(f"InputFormatError: {err}")
        print(f"peak RSS growth MB: {grown}")
        sys.exit(3)
    print("loaded")
    """
)

WORKFLOW = Path(__file__).resolve().parents[2] / "workflow"


def load_in_subprocess(kind: str, path) -> tuple[str, int]:
    """(the InputFormatError message, peak RSS growth in MB) of loading ``path`` under the limit."""
    done = subprocess.run(
        [sys.executable, "-c", LOADER, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        # this checkout's quantscan, not an installed copy
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(WORKFLOW)},
    )
    assert done.returncode == 3, f"rc {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    lines = done.stdout.splitlines()
    return lines[0].removeprefix("InputFormatError: "), int(lines[1].split(":")[1])


def fp32_file(tmp_path, arch: dict, name: str = "model.pt"):
    """A real 4-filter model's weights under a (possibly hostile) ``arch``."""
    torch.manual_seed(0)
    state = SweepNet(filters=4).state_dict()
    path = tmp_path / name
    torch.save({"format": modelio.FORMAT, "arch": arch, "state_dict": state}, path)
    return path


def packed_file(tmp_path, arch: dict, name: str = "model.qsp"):
    """A real 4-filter packed model whose header declares ``arch`` (lengths and CRC kept valid)."""
    torch.manual_seed(0)
    good = tmp_path / "good.qsp"
    pack.save_packed(SweepNet(filters=4), good, SMALL)
    data = good.read_bytes()
    magic, version, flags, hlen, plen, _ = pack._PREFIX.unpack_from(data)
    body = data[pack._PREFIX.size :]
    header = json.loads(zlib.decompress(body[:hlen]))
    header["arch"] = arch
    hbytes = zlib.compress(json.dumps(header).encode())
    payload = body[hlen:]
    crc = zlib.crc32(payload, zlib.crc32(hbytes))
    path = tmp_path / name
    path.write_bytes(
        pack._PREFIX.pack(magic, version, flags, len(hbytes), plen, crc) + hbytes + payload
    )
    return path


def test_honest_files_load(tmp_path):
    assert modelio.load_fp32(fp32_file(tmp_path, SMALL))[1] == SMALL
    assert pack.load_packed(packed_file(tmp_path, SMALL))[1]["arch"] == SMALL


@pytest.mark.parametrize("kind", ["fp32", "packed"])
def test_huge_declared_filters_fail_fast_without_allocating(tmp_path, kind):
    """filters 30000 would be ~33 GB of float32 weights; the file is a few kB."""
    arch = {"name": "sweepnet", "filters": 30000}
    path = (fp32_file if kind == "fp32" else packed_file)(tmp_path, arch)
    assert path.stat().st_size < 20_000
    message, grown = load_in_subprocess(kind, path)
    assert message == f"{path}: field 'arch.filters' = 30000 is out of range [1, 4096]"
    assert grown < 64


def test_fp32_arch_larger_than_the_file_is_rejected_before_building(tmp_path):
    """filters 2048 is within bounds but needs ~150 MB of weights that the file does not hold."""
    arch = {"name": "sweepnet", "filters": 2048}
    path = fp32_file(tmp_path, arch)
    nbytes = state_nbytes(validate_arch(arch, path))
    assert nbytes == 153_182_728
    message, grown = load_in_subprocess("fp32", path)
    assert message == (
        f"{path}: field 'arch' = {arch} declares 153,182,728 bytes of weights but the file has "
        f"only {path.stat().st_size:,} bytes"
    )
    assert grown < 64  # building the model first would touch ~150 MB


def test_packed_arch_that_disagrees_with_stored_shapes_is_rejected_before_building(tmp_path):
    path = packed_file(tmp_path, {"name": "sweepnet", "filters": 2048})
    message, grown = load_in_subprocess("packed", path)
    assert message == (
        f"{path}: field 'tensors' entry 'sweepnet_first_conv.weight' has shape (4, 1, 2, 2) but "
        "field 'arch' = {'name': 'sweepnet', 'filters': 2048} declares (2048, 1, 2, 2)"
    )
    assert grown < 64


def test_fp32_state_dict_that_disagrees_with_arch_names_the_tensor(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    state = SweepNet(filters=8).state_dict()
    torch.save({"format": modelio.FORMAT, "arch": SMALL, "state_dict": state}, path)
    with pytest.raises(InputFormatError) as err:
        modelio.load_fp32(path)
    assert str(err.value) == (
        f"{path}: field 'state_dict' tensor 'sweepnet_first_conv.weight' has shape (8, 1, 2, 2) "
        "but 'arch' = {'name': 'sweepnet', 'filters': 4} declares (4, 1, 2, 2)"
    )


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        (
            {"name": "viralcnn", "length": 10_000_000},
            "field 'arch' = {'name': 'viralcnn', 'length': 10000000} declares 1,280,811,192 "
            f"parameters and buffers, more than the {MAX_PARAMETERS:,} a model file may hold",
        ),
        (
            {"name": "sweepnet", "filters": "32"},
            "field 'arch.filters' = '32' is not an integer",
        ),
        (
            {"name": "sweepnet", "filters": True},
            "field 'arch.filters' = True is not an integer",
        ),
        (
            {"name": "viralcnn", "n_classes": 1},
            "field 'arch.n_classes' = 1 is out of range [2, 100000]",
        ),
        (
            {"name": "nope"},
            "field 'arch.name' = 'nope': cannot rebuild the model, no such architecture "
            "(known: position, sweepnet, unet3d, viralcnn)",
        ),
        (
            {"name": "sweepnet", "bogus": 1},
            "field 'arch' = {'name': 'sweepnet', 'bogus': 1} cannot rebuild the model: "
            "SweepNet.__init__() got an unexpected keyword argument 'bogus'",
        ),
        ([1], "field 'arch' = [1] is not {'name': ..., ...}"),
    ],
)
def test_validate_arch_messages(arch, message):
    with pytest.raises(InputFormatError) as err:
        validate_arch(arch, "dir/m.qsp")
    assert str(err.value) == f"dir/m.qsp: {message}"


def test_validate_arch_matches_the_built_model():
    for arch in (SMALL, {"name": "viralcnn", "n_classes": 3, "length": 400}):
        state = build_model(arch).state_dict()
        assert validate_arch(arch, "m") == {k: (tuple(v.shape), v.dtype) for k, v in state.items()}


def test_truncated_fp32_file_names_the_file(tmp_path):
    path = fp32_file(tmp_path, SMALL)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError, match=rf"^{path}: not a quantscan model file \(not a zip"):
        modelio.load_fp32(path)


def test_fp32_zip_record_larger_than_the_file_is_rejected(tmp_path):
    """torch allocates a record's declared size before reading it: the sizes are checked first."""
    path = fp32_file(tmp_path, SMALL)
    data = bytearray(path.read_bytes())
    # the central directory entry of the first record: its uncompressed size field at offset 24
    cd = data.index(b"PK\x01\x02")
    name_len = int.from_bytes(data[cd + 28 : cd + 30], "little")
    name = data[cd + 46 : cd + 46 + name_len].decode()
    data[cd + 24 : cd + 28] = (3 << 30).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(InputFormatError) as err:
        modelio.load_fp32(path)
    assert str(err.value) == (
        f"{path}: record {name!r} declares {3 << 30:,} bytes but the file has "
        f"{len(data):,} (truncated or corrupted)"
    )

"""The machine description the benchmarks record with their numbers (a shared machine is slower
and noisier, so every JSON says where it ran)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from quantscan.export.onnx import cpu_has_vnni


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: instruction sets that change the engines' speed (fp32 FMA width, int8 and bf16 dot products)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")


def cpu_identity(cpuinfo: str | None = None) -> dict:
    """Family, model and stepping numbers, clock and ISA flags of the first CPU in ``cpuinfo``
    (the text of /proc/cpuinfo, read when None).

    A cloud VM's model name ("AMD EPYC") does not say which host generation it landed on, and
    that changes the numbers: on the 2-core AMD EPYC VMs of issue 24, family 25 (Zen 4: 256-bit
    FMA units) ran fp32 GEMM at about half the rate of the host of the session before, which the
    model name did not tell apart. Empty where /proc/cpuinfo is not readable.
    """
    fields = {"cpu family": "family", "model": "model_number", "stepping": "stepping"}
    out: dict = {}
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return out
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in fields and value.isdigit():
            out[fields[key]] = int(value)
        elif key == "cpu MHz":
            out["mhz"] = float(value)
        elif key == "flags":
            flags = set(value.split())
            out["isa"] = [f for f in ISA_FLAGS if f in flags]
    return out


def describe() -> dict:
    """CPU, cores, VNNI and library versions (callers add load averages)."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_identity": cpu_identity(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "vnni": cpu_has_vnni(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }


def fp32_gemm_flops(threads: int, n: int = 2048, seconds: float = 3.0) -> dict:
    """The fp32 rate this machine attains, in FLOP/s: square ``n`` x ``n`` matrix products with
    ``threads`` intra-op threads, the best of repeated runs for ``seconds``, through PyTorch's BLAS
    (``torch.mm``) and, where the lookup engine uses it, oneDNN's linear kernel
    (``runtime.lut.onednn_linear``; on an AMD EPYC it was 2-3x faster than MKL); the faster
    route is the rate. A practical ceiling (a large, cache-friendly GEMM), not the datasheet peak."""
    import time

    from quantscan.runtime.lut import _onednn_linear_op, onednn_linear

    routes = {"torch.mm": torch.mm}
    if onednn_linear():
        routes["onednn_linear"] = lambda a, b: _onednn_linear_op()(a, b, None, "none", [], "")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    rates = {}
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for name, mm in routes.items():
            mm(a, b)  # warm up
            best, runs, t_end = float("inf"), 0, time.perf_counter() + seconds / len(routes)
            while time.perf_counter() < t_end or runs < 3:
                t = time.perf_counter()
                mm(a, b)
                best = min(best, time.perf_counter() - t)
                runs += 1
            rates[name] = 2.0 * n**3 / best
    finally:
        torch.set_num_threads(before)
    route = max(rates, key=rates.get)
    return {
        "flops_per_s": rates[route],
        "route": route,
        "flops_per_s_by_route": rates,
        "gemm_n": n,
        "threads": threads,
    }


def model_flops(model: torch.nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``example`` (one multiply-add = 2 FLOPs), counted
    by PyTorch's ``FlopCounterMode`` (convolutions and matrix products; element-wise operations
    are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(example)
    return int(counter.get_total_flops())

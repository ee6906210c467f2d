"""What the CPU can do, for choosing a precision and for recording next to a benchmark's figures."""

from __future__ import annotations

import functools
import os
import platform


@functools.cache
def cpu_info() -> dict:
    """Model name, logical cores and the instruction-set flags that matter for inference (Linux: /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
              "avx512_fp16")
    return {"model": model, "cores": os.cpu_count() or 1, "machine": platform.machine(),
            "flags": [f for f in wanted if f in flags]}


def has_bf16() -> bool:
    """bf16 arithmetic in hardware (AVX512_BF16 or AMX): reduced precision pays on this CPU."""
    flags = set(cpu_info()["flags"])
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def has_vnni() -> bool:
    """int8 dot products in hardware (VNNI, AVX-VNNI or AMX): INT8 models pay on this CPU."""
    flags = set(cpu_info()["flags"])
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

"""How much memory is free for tensors: what the pre-checks (training, evaluation, reading arrays) compare their
estimates with, so that a size that cannot fit is refused in one line instead of ended by the kernel."""

from __future__ import annotations

import os

import torch


def available_memory(device: torch.device) -> int | None:
    """Bytes free for tensors on `device`: a CUDA device's free memory, else the host's MemAvailable
    (/proc/meminfo), else its physical memory (os.sysconf); None where none of these can be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None

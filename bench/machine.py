"""The box a run happens on: what it is, how busy others keep it, and a process's memory."""

from __future__ import annotations

import contextlib
import os
import platform
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil


def describe(**extra: object) -> dict:
    """Return the CPU, memory and Python of this box, plus ``extra``."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        **extra,
    }


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[dict]:
    """Sample a process's RSS every 20 ms during the block; the dict gets ``peak`` bytes."""
    process, result, stop = psutil.Process(pid), {"peak": 0}, threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            result["peak"] = max(result["peak"], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


def cpu_seconds() -> tuple[float, float]:
    """Return the CPU seconds the whole box and this process tree (waited-for children included) have used."""
    box = psutil.cpu_times()
    return box.user + box.nice + box.system + box.irq + box.softirq, sum(os.times()[:4])


def filesystem(path: str) -> str:
    """Return the file system a path lives on, as "type on device" (tmpfs would make fsync free)."""
    resolved = os.path.realpath(path)
    mounts = [part for part in psutil.disk_partitions(all=True) if resolved.startswith(part.mountpoint)]
    mount = max(mounts, key=lambda part: len(part.mountpoint), default=None)
    return f"{mount.fstype} on {mount.device}" if mount else "unknown"


def scrypt_bytes(method: str) -> int:
    """Return the memory one hash with a werkzeug scrypt method needs (128·N·r), else 0."""
    name, *params = method.split(":")
    if name != "scrypt":
        return 0
    n, r = (int(params[0]), int(params[1])) if len(params) >= 2 else (2**15, 8)
    return 128 * n * r

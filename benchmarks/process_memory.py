"""This process's memory from /proc/self/status: anonymous resident bytes (numpy arrays, not the file pages
of a memory-mapped shard), the peak (VmHWM) and its reset, and a `Peak` context for the growth over a block.

Importing it fixes glibc's mmap threshold (below), so import it before allocating what is measured.
"""

from __future__ import annotations

import ctypes

try:
    _LIBC = ctypes.CDLL("libc.so.6")
    # A fixed mmap threshold (glibc raises it dynamically up to 32 MB otherwise): freed numpy arrays of
    # the add() chunks go back to the OS instead of staying in the heap and showing up as buffer memory.
    _LIBC.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
except (OSError, AttributeError):
    _LIBC = None


def mem(trim: bool = False) -> dict:
    """RssAnon (anonymous resident bytes: numpy arrays, not the mapped shard) and VmHWM (peak RSS);
    `trim` first returns free heap memory to the OS (glibc malloc_trim) so RssAnon counts live data."""
    if trim and _LIBC is not None:
        _LIBC.malloc_trim(0)
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("RssAnon", "VmHWM", "VmRSS", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Peak:
    """Peak RSS growth over a block of code, from VmHWM after a reset (file pages excluded at the start)."""

    def __enter__(self) -> Peak:
        reset_peak()
        self.start = mem()
        return self

    def __exit__(self, *exc) -> None:
        end = mem()
        self.extra = end["VmHWM"] - self.start["VmRSS"]  # bytes above the RSS at the start
        self.anon_growth = end["RssAnon"] - self.start["RssAnon"]

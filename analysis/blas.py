"""Run scipy's BLAS single-threaded for the many tiny L-BFGS-B problems of a fit.

scipy's L-BFGS-B calls its bundled OpenBLAS on vectors of a handful of numbers. OpenBLAS then
wakes its worker threads, which spin; on a small or busy machine this made each fit about 10x
slower (measured: 0.44 s vs 0.04 s per fit on 2 busy cores). Threads buy nothing at this size.

`single_threaded_blas` sets scipy's OpenBLAS to one thread for the duration of a block and then
restores the previous count. It is best effort: if the library or its symbols are not found
(another BLAS, another scipy build), it does nothing. threadpoolctl would be the general tool, but
it is not a dependency of this project.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


@cache
def _scipy_openblas() -> ctypes.CDLL | None:
    try:
        import scipy

        base = os.path.dirname(scipy.__file__)
        candidates = sorted(glob.glob(os.path.join(base, os.pardir, "scipy.libs", "libscipy_openblas*.so*")))
        for path in candidates:
            lib = ctypes.CDLL(path)
            if hasattr(lib, "scipy_openblas_set_num_threads") and hasattr(lib, "scipy_openblas_get_num_threads"):
                return lib
    except (OSError, ImportError):
        return None
    return None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block, scipy's OpenBLAS uses one thread (no-op when it cannot be controlled)."""
    lib = _scipy_openblas()
    if lib is None:
        yield
        return
    before = int(lib.scipy_openblas_get_num_threads())
    lib.scipy_openblas_set_num_threads(1)
    try:
        yield
    finally:
        lib.scipy_openblas_set_num_threads(before)

"""Keeping freed CPU memory for reuse, so that repeated forward passes stop faulting pages in.

A forward pass on the CPU allocates its activations and frees them at the end. glibc's
``malloc`` serves large blocks with ``mmap`` and hands them back to the kernel when freed, and
returns the top of its heap once it exceeds a threshold, so the next pass takes a page fault for
every 4 KiB page it touches again. For a convolutional network at batch 4 or more that is tens
of thousands of faults per pass, and inference can run at half the speed it reaches with freed
memory kept (figures on the performance page of the documentation). Poly-CAM is thousands of
such passes.

:func:`tune_cpu_allocator` tells glibc to keep what it frees. It changes the whole process, which
a library should not do behind its caller's back, so the command line calls it (it owns its
process) and library users opt in. Preloading jemalloc or tcmalloc, or setting
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647`` before Python starts, has the same effect.
"""

from __future__ import annotations

import ctypes
import functools
import platform

__all__ = ["tune_cpu_allocator"]

# mallopt's parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_LARGEST_INT = 2**31 - 1


@functools.cache
def tune_cpu_allocator() -> bool:
    """Make the C allocator keep freed memory for reuse instead of returning it to the kernel.

    Large blocks come from the heap rather than ``mmap`` (``M_MMAP_MAX = 0``) and the heap is
    never trimmed (``M_TRIM_THRESHOLD`` at its largest), so the process keeps its peak memory
    and later forward passes reuse it without page faults. Calling it again does nothing; GPU
    memory is not concerned (PyTorch caches it already).

    Returns:
        ``True`` when applied, ``False`` where the C library is not glibc (macOS, Windows,
        musl), whose allocators need no such setting or do not offer it.

    Example::

        >>> from captum_polycam import PolyCam, tune_cpu_allocator
        >>> tune_cpu_allocator()  # once, before the first map
        True
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    # mallopt returns 1 on success, 0 on failure.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST_INT))

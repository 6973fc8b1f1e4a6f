"""runtime/linux/cdll.py, the ctypes subset syscalls.py runs on, against the real ctypes:
the same C types, errno capture, and a libc call through CDLL and PyDLL."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from runtime.linux import cdll
from runtime.linux import syscalls as sc

pytestmark = pytest.mark.skipif(ctypes.sizeof(ctypes.c_long) != 8,
                                reason="cdll.py's aliases are 64-bit Linux's")


def test_types_match_ctypes():
    for name in ("c_int", "c_uint", "c_long", "c_ulong", "c_char_p", "c_int32", "c_uint32",
                 "c_uint64", "c_size_t"):
        ours, real = getattr(cdll, name), getattr(ctypes, name)
        assert ours._type_ == real._type_, name
        assert ctypes.sizeof(ours) == ctypes.sizeof(real), name
    arr = (cdll.c_uint64 * 4)(1, 2, 3, 2**64 - 1)
    assert list(arr) == [1, 2, 3, 2**64 - 1] and ctypes.sizeof(arr) == 32


def test_calls_errno_and_restype():
    libc = cdll.CDLL(None, use_errno=True)
    assert libc.getpid() == os.getpid()
    libc.labs.argtypes = [cdll.c_long]
    libc.labs.restype = cdll.c_long
    assert libc.labs(-(2**40)) == 2**40  # 64 bits each way, not the default C int
    assert libc.umount2(b"/nonexistent-pyrunc-cdll", 0) == -1
    assert cdll.get_errno() in (errno.ENOENT, errno.EPERM, errno.EINVAL)
    assert libc.getpid is libc.getpid  # cached like ctypes'


def test_structure_and_byref():
    class Hdr(cdll.Structure):
        _fields_ = [("version", cdll.c_uint32), ("pid", cdll.c_int)]

    h = Hdr(0x20080522, 0)
    libc = cdll.CDLL(None, use_errno=True)
    libc.syscall.restype = cdll.c_long
    assert libc.syscall(sc.SYS["capget"], cdll.byref(h), None) == 0  # the version only
    assert h.version in (0x20080522, 0x20071026, 0x19980330)


def test_pythonapi_keeps_the_gil():
    assert cdll.pythonapi.Py_IsInitialized() == 1

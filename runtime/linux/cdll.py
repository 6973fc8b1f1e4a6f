"""The few ctypes names syscalls.py uses, built on the `_ctypes` extension alone.

`import ctypes` costs ~1.8 ms on every create, run and exec (5.5 M instructions: its
package defines some 40 C types, function-prototype caches and byte-order structures); this
module defines only what syscalls.py needs, exactly as ctypes/__init__.py defines them on
Linux (same `_type_` codes, CDLL over `_ctypes.dlopen`, PyDLL keeping the GIL). Modules
needing more (seccomp, seccomp_bpf, devices_bpf) import the real ctypes, off the hot path.
"""

from _ctypes import (
    FUNCFLAG_CDECL,
    FUNCFLAG_PYTHONAPI,
    FUNCFLAG_USE_ERRNO,
    RTLD_LOCAL,
    CFuncPtr,
    Structure,
    _SimpleCData,
    byref,
    dlopen,
    get_errno,
)

__all__ = ["CDLL", "PyDLL", "Structure", "byref", "c_char_p", "c_int", "c_int32", "c_long",
           "c_size_t", "c_uint", "c_uint32", "c_uint64", "c_ulong", "get_errno", "pythonapi"]


class c_int(_SimpleCData):  # ctypes' names, lower case
    _type_ = "i"


class c_uint(_SimpleCData):
    _type_ = "I"


class c_long(_SimpleCData):
    _type_ = "l"


class c_ulong(_SimpleCData):
    _type_ = "L"


class c_char_p(_SimpleCData):
    _type_ = "z"


# 64-bit Linux: int is 32 bits, long 64 like a pointer (ctypes makes the same aliases).
c_int32, c_uint32, c_uint64, c_size_t = c_int, c_uint, c_ulong, c_ulong


class CDLL:
    """A loaded library (None: the program and its libc); functions as attributes, which
    release the GIL and return a C int unless their restype says otherwise."""

    _func_flags_ = FUNCFLAG_CDECL

    def __init__(self, name: "str | None", use_errno: bool = False) -> None:
        flags = self._func_flags_ | (FUNCFLAG_USE_ERRNO if use_errno else 0)

        class _FuncPtr(CFuncPtr):
            _flags_ = flags
            _restype_ = c_int

        self._name = name
        self._FuncPtr = _FuncPtr
        self._handle = dlopen(name, RTLD_LOCAL)  # type: ignore[arg-type]  # None: dlopen(NULL)

    def __getattr__(self, name: str) -> "CFuncPtr":
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        # typeshed wants a ctypes.CDLL; the C code only reads `_handle`
        func = self._FuncPtr((name, self))  # type: ignore[arg-type]
        func.__name__ = name  # type: ignore[attr-defined]
        setattr(self, name, func)
        return func


class PyDLL(CDLL):
    """Like CDLL, but the GIL stays held across each call."""

    _func_flags_ = FUNCFLAG_CDECL | FUNCFLAG_PYTHONAPI


pythonapi = PyDLL(None)

"""A restricted unpickler for untrusted annotation files (RHD's ``anno_*.pickle``).

``pickle.load`` runs whatever callable a pickle names, so a tampered annotation file could run
arbitrary code at build time. :func:`load` admits only plain containers (dict, list, tuple,
str, bytes, numbers, which need no globals) and the handful of numpy globals that rebuild
arrays, dtypes and scalars. Any other global (``os.system``, ``builtins.eval``, a user class)
raises :class:`pickle.UnpicklingError` naming it.

RHD's pickles were written by Python 2, so :func:`load` decodes byte strings as latin-1 (the
documented way to read Python 2 numpy pickles in Python 3).
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

# (module, name) pairs a numpy array / dtype / scalar pickle needs. numpy 2 moved
# ``numpy.core`` to ``numpy._core``; old pickles name the former, so both are admitted and
# the old name is redirected to avoid numpy's deprecation shim.
_NUMPY_GLOBALS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})
_BUILTIN_GLOBALS = frozenset({"set", "frozenset", "complex", "bytearray"})
# Protocols 0-2 spell bytes as ``_codecs.encode(str, "latin1")``: a pure string codec call.
_OTHER_GLOBALS = frozenset({("_codecs", "encode")})
_MODULE_ALIASES = {
    "numpy.core.multiarray": "numpy._core.multiarray",
    "numpy.core.numeric": "numpy._core.numeric",
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/dtype globals and a few builtin containers."""

    def find_class(self, module: str, name: str) -> Any:
        module = _MODULE_ALIASES.get(module, module)
        if (module, name) in _NUMPY_GLOBALS or (module, name) in _OTHER_GLOBALS:
            return super().find_class(module, name)
        if module in ("builtins", "__builtin__") and name in _BUILTIN_GLOBALS:
            return super().find_class("builtins", name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name} from an untrusted pickle: only numpy "
            "arrays/dtypes and plain containers are allowed. If this file really is the data "
            "set's annotation file, it has been modified; re-download it.")


def load(file: BinaryIO) -> Any:
    """Loads a pickle from an open binary file with :class:`SafeUnpickler` (latin-1 strings)."""
    return SafeUnpickler(file, encoding="latin1").load()


def loads(data: bytes) -> Any:
    """Like :func:`load` for a bytes object."""
    return load(io.BytesIO(data))

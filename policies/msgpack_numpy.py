"""NumPy arrays over msgpack, byte-compatible with openpi's ``openpi_client.msgpack_numpy``.

The wire format of openpi's websocket policy protocol (``policies.remote``, ``policies.serve``):
plain msgpack (``str`` keys and text as msgpack str, ``bytes`` as bin; tuples come back as
lists), where an array is a map with *bytes* keys, in this order::

    {b"__ndarray__": True, b"data": <bin: the C-order bytes>, b"dtype": "<f4", b"shape": [T, D]}

and a NumPy scalar ``{b"__npgeneric__": True, b"data": <its .item()>, b"dtype": "<f4"}``. The
dtype is NumPy's ``dtype.str`` (byte order, kind, size), so ``float32``, ``uint8``, ``bool``,
fixed-width strings and big-endian arrays all survive the trip. Object, structured (void) and
complex dtypes are refused, as openpi refuses them.

No pickle, ever: decoding builds an array from bytes, a dtype string and a shape only. Decoded
arrays are read-only views of the message (as openpi's are): copy before writing into one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import msgpack
except ImportError as exc:  # an optional extra: say what to install
    raise ImportError(
        "policies.msgpack_numpy needs msgpack: pip install 'kizuna[remote]' (msgpack, websockets)"
    ) from exc

ARRAY_TAG = b"__ndarray__"
SCALAR_TAG = b"__npgeneric__"
# Object arrays would need pickle; void and complex have no portable meaning over the wire.
REFUSED_KINDS = ("V", "O", "c")


def _check_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind in REFUSED_KINDS:
        raise ValueError(
            f"cannot send dtype {dtype} over msgpack (object, structured and complex dtypes are "
            "refused, as in openpi); convert to a numeric or fixed-width string dtype"
        )
    return dtype


def pack_array(obj: Any) -> Any:
    """msgpack's ``default`` hook: an ndarray or NumPy scalar as openpi's tagged map."""
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        return {
            ARRAY_TAG: True,
            b"data": obj.tobytes(),  # C order whatever the array's layout
            b"dtype": obj.dtype.str,
            b"shape": obj.shape,
        }
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return {SCALAR_TAG: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot serialize {type(obj).__name__!r} with msgpack")


def unpack_array(obj: dict[Any, Any]) -> Any:
    """msgpack's ``object_hook``: openpi's tagged maps back into arrays and scalars."""
    if ARRAY_TAG in obj:
        dtype = _check_dtype(np.dtype(obj[b"dtype"]))
        return np.ndarray(buffer=obj[b"data"], dtype=dtype, shape=tuple(obj[b"shape"]))
    if SCALAR_TAG in obj:
        return _check_dtype(np.dtype(obj[b"dtype"])).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    """Encode ``obj`` (dicts, lists, numbers, str, bytes, arrays) as one msgpack message."""
    return msgpack.packb(obj, default=pack_array, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode one message from ``packb`` or from openpi's client or server."""
    return msgpack.unpackb(data, object_hook=unpack_array, raw=False)

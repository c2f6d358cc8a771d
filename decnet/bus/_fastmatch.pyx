# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled hot path: one extension, one include file per concern.

- ``_topics.pxi``: topic and pattern checks, ``matches``
- ``_index.pxi``: ``SubscriptionIndex``, the token trie and its result cache
- ``_codec.pxi``: ``FrameDecoder`` and ``encode``, the docs/protocol.md §3 frames
- ``_delivery.pxi``: the client side, ``Event``, ``EventQueue``, ``deliver``, ``client_feed``
- ``_routing.pxi``: the broker side, ``RouteStats``, ``Outbox``, ``route``, ``relay``

One extension rather than five: ``relay`` and ``deliver`` call the decoder,
the index and the queues through their C-level methods, which a call across
modules would turn back into Python calls. The package ``_pure`` is the twin,
module for module, and the reference for behaviour: every name here has one
there with the same answers and errors. Change both.
"""

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport PyObject
from libc.string cimport memchr, memcmp, memcpy

import asyncio
import collections

import orjson

from . import constants as C
from . import errors
from ._grammar import explain
from ._shared import ACTIVE, BAD_CACHE_SIZE, BAD_MAX_PAYLOAD, BAD_MAXSIZE, CLOSED, NEW, Gap, not_str, not_str_or_none
from .errors import TopicError

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object)
    const void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    object PyUnicode_DecodeASCII(const char*, Py_ssize_t, const char*)
    PyObject* PyDict_GetItemWithError(object, object)

# Each include file reads the limits it needs from constants.py into C
# variables of its own. The verbs are shared: the decoder hands out these very
# objects, so ``verb is PUB`` works in the delivery and routing too.
cdef str V_HELLO = C.HELLO, V_SUB = C.SUB, V_UNSUB = C.UNSUB, V_PUB = C.PUB
cdef str V_EVT = C.EVT, V_PING = C.PING, V_PONG = C.PONG, V_ERR = C.ERR, V_BYE = C.BYE


include "_topics.pxi"
include "_index.pxi"
include "_codec.pxi"
include "_delivery.pxi"
include "_routing.pxi"

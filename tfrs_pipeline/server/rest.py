"""TensorFlow Serving's REST contract, apart from any web framework: paths, request bodies, answers.

* ``GET  /v1/models/NAME[/versions/N|/labels/L]`` -> ``GetModelStatusResponse``.
* ``GET  /v1/models/NAME[/versions/N|/labels/L]/metadata`` -> ``GetModelMetadataResponse``
  (the signature defs, read from ``saved_model.pb`` as TensorFlow Serving writes them).
* ``POST /v1/models/NAME[/versions/N|/labels/L]:predict`` with ``signature_name`` and either
  ``inputs`` (columnar, answered as ``{"outputs": {...}}``) or ``instances`` (rows, answered
  as ``{"predictions": [...]}``).

Errors are ``{"error": "..."}`` with TensorFlow Serving's codes: 400 for a bad argument
(including errors raised inside the graph, such as a negative ``k``), 404 for an unknown
model, version, label or signature, 413 for a body over the limit. Non-finite floats are
written as TensorFlow Serving writes them: ``NaN``, ``Infinity``, ``-Infinity``. A float32
output is written as the shortest decimal that reads back as the same float32 (``4.618762``,
not the 17 digits of its float64 widening).

Row format and scalar inputs: TensorFlow Serving stacks each named input across instances,
so a scalar such as ``k`` has no row form. Instances may repeat the same ``k``; different
``k`` values in one request are refused with a 400 that says how to send them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import tensorflow as tf

from tfrs_pipeline.ids import as_str, is_utf8
from tfrs_pipeline.model_dir import SAVED_MODEL


class NotFound(LookupError):
    """An unknown model, version, label or signature: HTTP 404."""


class BadRequest(ValueError):
    """The request is malformed or out of bounds: HTTP 400 (413 when ``status`` says so)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    Args:
        max_body_bytes: request body size (larger: 413).
        max_batch: rows per request (users, movies).
        max_list: entries per row of a list input (``movie_ids``, ``exclude_movie_ids``).
        max_k: the largest ``k``.
        max_answer: the most movies one answer may hold (rows x ``k``): a request for more is
            a 400 naming the limit, so that no one answer (1,024 users x ``k`` 1,000 is 47 MB of
            JSON) holds the server up for the other requests.
        timeout_seconds: a request still unanswered after this gets 504 (reading its body included).
    """

    max_body_bytes: int = 4 * 1024 * 1024
    max_batch: int = 1024
    max_list: int = 1000
    max_k: int = 1000
    max_answer: int = 100_000
    timeout_seconds: float = 30.0


_MODEL_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                         r"(?P<tail>/metadata|:[A-Za-z_]+)?$")


@dataclass(frozen=True)
class ModelPath:
    """A parsed ``/v1/models/...`` path."""

    name: str
    version: int | None
    label: str | None
    verb: str  # "status", "metadata" or the verb after ":" ("predict", "classify", ...)


def parse_model_path(path: str) -> ModelPath | None:
    """The parts of a ``/v1/models/...`` path, or None when it is not one.

    Raises:
        BadRequest: the version is not an integer.
    """
    match = _MODEL_PATH.match(path)
    if match is None:
        return None
    version = match["version"]
    if version is not None and not (version.isascii() and version.isdigit()):
        raise BadRequest(f"version must be an integer, got {version!r}")
    tail = match["tail"] or ""
    verb = "metadata" if tail == "/metadata" else tail[1:] if tail else "status"
    return ModelPath(match["name"], int(version) if version else None, match["label"], verb)


# -- requests ----------------------------------------------------------------------------------------


@dataclass
class PredictRequest:
    """A decoded ``:predict`` body: the signature, its inputs as NumPy arrays, and the format to answer in."""

    signature_name: str
    inputs: dict[str, np.ndarray]
    rows: bool


def decode_body(body: bytes) -> dict:
    """The JSON object of a request body.

    Raises:
        BadRequest: not UTF-8 JSON, or not an object.
    """
    try:
        value = json.loads(body or b"{}", parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"the request body is not JSON: {error}") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    return value


def _no_constant(name: str):
    raise BadRequest(f"the request body holds {name}, which is not a JSON number; send finite numbers")


def parse_predict(body: dict, signatures: dict, limits: Limits) -> PredictRequest:
    """Checks a ``:predict`` body against the model's signatures and the limits.

    Raises:
        BadRequest: a malformed body, wrong inputs, or inputs over the limits.
        NotFound: the signature does not exist.
    """
    unknown = sorted(set(body) - {"signature_name", "inputs", "instances"})
    if unknown:
        raise BadRequest(f"unknown request field(s) {unknown}; a predict request has signature_name and "
                         "either inputs (columnar) or instances (rows)")
    if "inputs" in body and "instances" in body:
        raise BadRequest('the request has both "inputs" and "instances"; send one of them '
                         '("inputs": columnar, "instances": rows)')
    if "inputs" not in body and "instances" not in body:
        raise BadRequest('the request needs "inputs" (columnar) or "instances" (rows)')
    name = body.get("signature_name", "serving_default")
    if not isinstance(name, str):
        raise BadRequest(f"signature_name must be a string, got {name!r}")
    if name not in signatures:
        raise NotFound(f"signature {name!r} not found; this model has {', '.join(sorted(signatures))}")
    specs = signatures[name].structured_input_signature[1]
    if "inputs" in body:
        columns, rows = body["inputs"], False
        if not isinstance(columns, dict):
            raise BadRequest(f'"inputs" must be an object of named inputs {sorted(specs)}')
    else:
        columns, rows = _columns_of_rows(body["instances"], specs), True
    missing, extra = sorted(set(specs) - set(columns)), sorted(set(columns) - set(specs))
    if missing or extra:
        raise BadRequest(f"signature {name!r} takes inputs {sorted(specs)}; missing {missing}, unexpected {extra}")
    inputs = {key: _tensor_value(key, columns[key], spec, limits) for key, spec in specs.items()}
    batch = {len(v) for v in inputs.values() if v.ndim > 0}
    if len(batch) > 1:
        raise BadRequest(f"inputs of signature {name!r} must have the same number of rows; got {sorted(batch)}")
    if "k" in inputs and batch and (answer := batch.pop() * int(inputs["k"])) > limits.max_answer:
        raise BadRequest(f"the answer would hold {answer:,} movies ({answer // int(inputs['k']):,} rows x k "
                         f"{int(inputs['k']):,}); the limit is {limits.max_answer:,} (--max-answer): ask for fewer "
                         "rows or a smaller k per request")
    return PredictRequest(name, inputs, rows)


def _columns_of_rows(instances, specs: dict) -> dict:
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    if not all(isinstance(i, dict) for i in instances):
        if len(specs) == 1:  # one input: instances may be bare values, as TensorFlow Serving allows
            return {next(iter(specs)): instances}
        raise BadRequest(f'each instance must be an object with inputs {sorted(specs)}')
    columns = {}
    for key, spec in specs.items():
        values = [i.get(key) for i in instances]
        if spec.shape.rank == 0:
            distinct = {json.dumps(v) for v in values}
            if len(distinct) > 1:
                raise BadRequest(f"input {key!r} is one value per request, but the instances give {len(distinct)} "
                                 f"different ones; send one request per {key}, or use the columnar form "
                                 f'{{"inputs": {{..., "{key}": value}}}}')
            columns[key] = values[0]
        else:
            columns[key] = values
        if any(v is None for v in values):
            raise BadRequest(f"instance {values.index(None)} has no input {key!r}")
    return columns


def _tensor_value(key: str, value, spec: tf.TensorSpec, limits: Limits) -> np.ndarray:
    rank = spec.shape.rank
    if spec.dtype == tf.string:
        array = _strings(key, value, rank)
    else:
        array = _integers(key, value, rank, spec.dtype)
    if rank >= 1 and len(array) > limits.max_batch:
        raise BadRequest(f"input {key!r} has {len(array):,} rows; the limit is {limits.max_batch:,} per request "
                         "(send several requests)")
    if rank == 2 and array.shape[1] > limits.max_list:
        raise BadRequest(f"input {key!r} has {array.shape[1]:,} entries per row; the limit is {limits.max_list:,}")
    if key == "k":
        k = int(array)
        if not 1 <= k <= limits.max_k:
            raise BadRequest(f"k must be between 1 and {limits.max_k:,}, got {k}")
    return array


def _strings(key: str, value, rank: int) -> np.ndarray:
    what = {0: "a string", 1: "a list of strings", 2: "a list of equal-length lists of strings"}[rank]
    try:
        array = np.array(value, dtype=object)
    except ValueError:
        array = None
    if array is None or array.ndim != rank:
        hint = ' (pad shorter rows with "")' if rank == 2 and isinstance(value, list) else ""
        raise BadRequest(f"input {key!r} must be {what}{hint}, got {_short(value)}")
    flat = array.reshape(-1)
    if not all(isinstance(v, str) for v in flat):
        bad = next(v for v in flat if not isinstance(v, str))
        raise BadRequest(f"input {key!r} must be {what}; {bad!r} is not a string (write ids in quotes)")
    if rank >= 1 and len(array) == 0:
        raise BadRequest(f"input {key!r} is empty")
    try:
        "".join(flat).encode("utf-8")  # one pass over every string
    except UnicodeEncodeError:
        bad = next(v for v in flat if not is_utf8(v))
        raise BadRequest(f"input {key!r} holds {bad!r}, which is not text (a lone surrogate); send UTF-8 "
                         "strings") from None
    return array


def _integers(key: str, value, rank: int, dtype: tf.DType) -> np.ndarray:
    if (rank != 0 or isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value)) or value != int(value)):
        raise BadRequest(f"input {key!r} must be an integer, got {_short(value)}")
    if not -(2**31) <= value < 2**31:
        raise BadRequest(f"input {key!r} is out of the {dtype.name} range: {_short(value)}")
    return np.asarray(int(value), dtype=dtype.as_numpy_dtype)


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- answers --------------------------------------------------------------------------------------------


def jsonable(value: np.ndarray):
    """An output array as JSON values: strings decoded, float32 as its shortest decimal."""
    if value.dtype.kind in "OS":
        return as_str(value).tolist()
    if value.dtype == np.float32:
        # str() of a float32 is its shortest round-trip decimal; NaN and infinities stay floats
        # (json.dumps writes NaN, Infinity, -Infinity).
        return value.astype(str).astype(np.float64).tolist()
    return value.tolist()


def encode_predict(outputs: dict[str, np.ndarray], rows: bool) -> bytes:
    """The answer to a ``:predict`` request, in the request's format.

    orjson writes the arrays directly; an answer holding a non-finite float goes through
    :func:`jsonable` and the json module instead, since orjson would write ``null`` for it.
    """
    finite = all(value.dtype.kind != "f" or np.isfinite(value).all() for value in outputs.values())
    if finite:
        columns = {name: jsonable(value) if value.dtype.kind in "OS" else np.ascontiguousarray(value)
                   for name, value in outputs.items()}
    else:
        columns = {name: jsonable(value) for name, value in outputs.items()}
    if not rows:
        body = {"outputs": columns}
    else:
        count = len(next(iter(columns.values()))) if columns else 0
        body = {"predictions": [{name: column[row] for name, column in columns.items()} for row in range(count)]}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY) if finite else encode(body)


def encode(body: dict) -> bytes:
    return json.dumps(body, allow_nan=True).encode("utf-8")


def metadata(name: str, version: int, saved_model_dir: str | Path) -> dict:
    """TensorFlow Serving's ``GetModelMetadataResponse`` for one version: its signature defs."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(tf.io.gfile.GFile(str(Path(saved_model_dir) / SAVED_MODEL), "rb").read())
    graph = proto.meta_graphs[0]
    signature_defs = {key: json_format.MessageToDict(value, preserving_proto_field_name=True)
                      for key, value in graph.signature_def.items() if not key.startswith("__")}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": signature_defs}}}

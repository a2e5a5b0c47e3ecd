"""The header of a GGUF file: its key/value metadata decoded into plain Python values, and its tensor table.

A GGUF file starts with a header, then its metadata: a list of `(key, typed value)` pairs such as
`llama.block_count = 30` or `tokenizer.ggml.tokens = [...49152 strings...]`, then the tensor table (name,
dims, ggml type and data offset of each tensor) and the tensor data. `gguf_metadata` reads only the metadata;
`gguf_header` also reads the tensor table, so a loader can map each tensor's bytes without parsing them.
Both read straight from a memory map of the file.

`gguf.GGUFReader` would do the same, but it also indexes every tensor and builds a numpy view for each
array element and string in the file (hundreds of thousands for a vocabulary), which takes several
seconds; here numeric arrays are decoded with one `np.frombuffer` each and strings with one pass of
`struct.unpack_from`. The value type codes are the `gguf` package's `GGUFValueType`.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

SUPPORTED_GGUF_VERSIONS = (2, 3)  # v1 counted with 32-bit ints; llama.cpp dropped it long ago

# struct format character of each fixed-width value type (the byte order prefix is added per file).
_FIXED_WIDTH_FORMATS = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}
_FIXED_WIDTH_SIZES = {value_type: struct.calcsize(fmt) for value_type, fmt in _FIXED_WIDTH_FORMATS.items()}


@dataclasses.dataclass(frozen=True)
class GGUFTensorInfo:
  """One entry of a GGUF tensor table.

  Attributes:
    name: the GGUF tensor name, e.g. `"blk.0.attn_q.weight"`.
    shape: numpy (row-major) shape, i.e. the file's dims reversed: `(out, in)` for a linear weight.
    ggml_type: storage type (`F32`, `F16`, `Q4_1`, ...).
    offset: absolute byte offset of the tensor's data in the file.
    nbytes: size of the tensor's data in bytes.
  """

  name: str
  shape: tuple[int, ...]
  ggml_type: GGMLQuantizationType
  offset: int
  nbytes: int


@dataclasses.dataclass(frozen=True)
class GGUFHeader:
  """`metadata` as `gguf_metadata` returns it, the `tensors` table in file order, and the file's `byte_order`
  (`"<"` little- or `">"` big-endian)."""

  metadata: dict[str, Any]
  tensors: list[GGUFTensorInfo]
  byte_order: str


class _MetadataDecoder:
  """Walks the header of one mapped GGUF file: `decode()` returns the metadata `{key: value}`, then
  `decode_tensor_table(alignment)` the tensor table that follows it."""

  def __init__(self, buffer: mmap.mmap, path: str):
    self._buffer = buffer
    self._size = len(buffer)
    self._path = path
    self._position = 0
    self.byte_order = "<"
    self.tensor_count = 0  # read from the header by decode()
    self._key = "<header>"  # the key being decoded, for error messages

  def decode(self) -> dict[str, Any]:
    """Reads the header, then every key/value pair, in file order."""
    if self._buffer[:4] != struct.pack("<I", GGUF_MAGIC):
      raise ValueError(f"{self._path!r} is not a GGUF file: it starts with {self._buffer[:4]!r}, not b'GGUF'")
    self._check_available(24)
    # Big-endian files are written with the same magic but a byte-swapped version number.
    (version,) = struct.unpack_from("<I", self._buffer, 4)
    if version & 0xFFFF == 0:
      self.byte_order = ">"
      (version,) = struct.unpack_from(">I", self._buffer, 4)
    if version not in SUPPORTED_GGUF_VERSIONS:
      raise ValueError(f"{self._path!r} is GGUF version {version}; supported versions are {SUPPORTED_GGUF_VERSIONS}")
    self.tensor_count, key_value_count = struct.unpack_from(self.byte_order + "QQ", self._buffer, 8)
    self._position = 24

    metadata: dict[str, Any] = {}
    for _ in range(key_value_count):
      self._key = "<key name>"
      key = self._read_string()
      self._key = key
      if key in metadata:
        raise ValueError(f"{self._path!r} holds the metadata key {key!r} twice")
      value_type = self._read_fixed_width(GGUFValueType.UINT32)
      metadata[key] = self._read_value(value_type)
    return metadata

  def decode_tensor_table(self, alignment: int) -> list[GGUFTensorInfo]:
    """Reads the tensor table that follows the metadata (call after `decode()`)."""
    entries = []
    for index in range(self.tensor_count):
      self._key = f"<tensor {index}>"
      name = self._read_string()
      self._key = f"<tensor {name!r}>"
      num_dims = self._read_fixed_width(GGUFValueType.UINT32)
      dims = [self._read_fixed_width(GGUFValueType.UINT64) for _ in range(num_dims)]
      type_code = self._read_fixed_width(GGUFValueType.UINT32)
      offset = self._read_fixed_width(GGUFValueType.UINT64)
      try:
        ggml_type = GGMLQuantizationType(type_code)
      except ValueError:
        raise self._fail(f"unknown ggml tensor type {type_code}") from None
      entries.append((name, tuple(reversed(dims)), ggml_type, offset))
    data_start = -(-self._position // alignment) * alignment
    tensors, names = [], set()
    for name, shape, ggml_type, offset in entries:
      if name in names:
        raise ValueError(f"{self._path!r} holds the tensor {name!r} twice")
      names.add(name)
      block_size, type_size = GGML_QUANT_SIZES[ggml_type]
      num_elements = int(np.prod(shape, dtype=np.int64))
      if num_elements % block_size:
        raise ValueError(f"{self._path!r}: tensor {name!r} of shape {shape} is not a whole number of "
                         f"{ggml_type.name} blocks of {block_size}")
      info = GGUFTensorInfo(name, shape, ggml_type, data_start + offset, num_elements // block_size * type_size)
      if info.offset + info.nbytes > self._size:
        raise ValueError(f"{self._path!r}: the data of tensor {name!r} ends at byte {info.offset + info.nbytes} "
                         f"but the file has {self._size} bytes; it is truncated")
      tensors.append(info)
    return tensors

  def _fail(self, problem: str) -> ValueError:
    return ValueError(f"{self._path!r}: {problem} (metadata key {self._key!r}, byte offset {self._position})")

  def _check_available(self, byte_count: int) -> None:
    if self._position + byte_count > self._size:
      raise self._fail(f"file ends after {self._size} bytes but {byte_count} more are needed; it is truncated")

  def _value_type(self, code: int) -> GGUFValueType:
    try:
      return GGUFValueType(code)
    except ValueError:
      raise self._fail(f"unknown GGUF value type {code}") from None

  def _read_fixed_width(self, value_type: GGUFValueType) -> Any:
    size = _FIXED_WIDTH_SIZES[value_type]
    self._check_available(size)
    (value,) = struct.unpack_from(self.byte_order + _FIXED_WIDTH_FORMATS[value_type], self._buffer, self._position)
    self._position += size
    return value

  def _read_string(self) -> str:
    length = self._read_fixed_width(GGUFValueType.UINT64)
    self._check_available(length)
    raw = self._buffer[self._position:self._position + length]
    self._position += length
    try:
      return raw.decode("utf-8")
    except UnicodeDecodeError as error:
      raise self._fail(f"string {raw[:40]!r} is not valid UTF-8 ({error.reason})") from None

  def _read_value(self, code: int) -> Any:
    value_type = self._value_type(code)
    if value_type in _FIXED_WIDTH_FORMATS:
      return self._read_fixed_width(value_type)
    if value_type == GGUFValueType.STRING:
      return self._read_string()
    return self._read_array()

  def _read_array(self) -> list[Any]:
    element_type = self._value_type(self._read_fixed_width(GGUFValueType.UINT32))
    count = self._read_fixed_width(GGUFValueType.UINT64)
    if element_type in _FIXED_WIDTH_FORMATS:
      return self._read_fixed_width_array(element_type, count)
    if element_type == GGUFValueType.STRING:
      return self._read_string_array(count)
    return [self._read_array() for _ in range(count)]  # an array of arrays: each element is (type, count, data)

  def _read_fixed_width_array(self, element_type: GGUFValueType, count: int) -> list[Any]:
    size = _FIXED_WIDTH_SIZES[element_type] * count
    self._check_available(size)
    if element_type == GGUFValueType.BOOL:
      dtype = np.dtype(np.uint8)
    else:
      dtype = np.dtype(self.byte_order + _FIXED_WIDTH_FORMATS[element_type])
    values = np.frombuffer(self._buffer, dtype=dtype, count=count, offset=self._position)
    self._position += size
    if element_type == GGUFValueType.BOOL:
      return (values != 0).tolist()
    return values.tolist()  # copies, so no view into the map outlives it

  def _read_string_array(self, count: int) -> list[str]:
    # The hot loop of a vocabulary (~100k strings): locals only, one bounds check at the end.
    buffer, size, position = self._buffer, self._size, self._position
    length_format = struct.Struct(self.byte_order + "Q")
    unpack_length = length_format.unpack_from
    strings: list[bytes] = []
    append = strings.append
    try:
      for _ in range(count):
        (length,) = unpack_length(buffer, position)
        position += 8
        append(buffer[position:position + length])
        position += length
    except struct.error:
      position = size + 1  # ran off the end while reading a length
    if position > size:
      raise self._fail(f"array of {count} strings runs past the end of the file; it is truncated")
    self._position = position
    try:
      return [raw.decode("utf-8") for raw in strings]
    except UnicodeDecodeError:
      index, raw = next((index, raw) for index, raw in enumerate(strings) if not _is_utf8(raw))
      raise self._fail(f"string {index} of the array, {raw[:40]!r}, is not valid UTF-8") from None


def _is_utf8(raw: bytes) -> bool:
  try:
    raw.decode("utf-8")
  except UnicodeDecodeError:
    return False
  return True


def gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Decodes every metadata key/value pair of a GGUF file, in file order.

  Integers become `int`, floats `float` (a float32 widened exactly, e.g. `9.999999747378752e-06`), bools
  `bool`, strings `str`, and arrays `list`s of those (arrays of arrays become nested lists). Little- and
  big-endian files of GGUF versions 2 and 3 are read; tensors are not touched.

  Args:
    path: the `.gguf` file.

  Returns:
    `{key: value}`, e.g. `{"general.architecture": "llama", "llama.block_count": 30, ...,
    "tokenizer.ggml.tokens": ["<|endoftext|>", ...]}`.

  Raises:
    FileNotFoundError: `path` does not exist.
    IsADirectoryError: `path` is a directory.
    ValueError: the file is not GGUF, is of an unsupported version, is truncated, repeats a key, or holds
      a string that is not UTF-8.
  """
  return _read_header(path, with_tensors=False).metadata


def gguf_header(path: str | os.PathLike[str]) -> GGUFHeader:
  """The metadata (as `gguf_metadata`) and the tensor table of a GGUF file; tensor data is not read.

  Each tensor's data starts at `general.alignment` (default 32) after the table plus its own offset. This is
  the table `gguf.GGUFReader` builds too, without GGUFReader's numpy view per metadata string (tens of
  seconds for a 49k-token vocabulary).

  Raises:
    The errors of `gguf_metadata`, and ValueError when `general.alignment` is not a power of two or a tensor
    has an unknown type, appears twice, or has data running past the end of the file.
  """
  return _read_header(path, with_tensors=True)


def _read_header(path: str | os.PathLike[str], *, with_tensors: bool) -> GGUFHeader:
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"GGUF file {path!r} does not exist")
  if os.path.isdir(path):
    raise IsADirectoryError(f"expected a GGUF file, but {path!r} is a directory")
  with open(path, "rb") as file:
    if os.fstat(file.fileno()).st_size == 0:
      raise ValueError(f"{path!r} is not a GGUF file: it is empty")
    with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
      decoder = _MetadataDecoder(buffer, path)
      metadata = decoder.decode()
      if not with_tensors:
        return GGUFHeader(metadata, [], decoder.byte_order)
      alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
      if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"{path!r}: general.alignment={alignment!r} is not a power of two")
      return GGUFHeader(metadata, decoder.decode_tensor_table(alignment), decoder.byte_order)

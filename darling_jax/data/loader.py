"""Reading prepared prompt datasets with grain: sharded, shuffled, resumable batches of plain records.

`prompt_loader(builder, split, batch_size=..., seed=...)` wraps `builder.as_data_source(split)` (random
access over the array_record files) in a grain pipeline: each JAX process reads its own contiguous slice of
the records (`shard_bounds`: disjoint, together covering every record), shuffled with `seed` (a fresh order
every epoch) and repeated `num_epochs` times (forever by default). Each batch is a dict of columns (see
`collate_records`):

  {"prompt": ["Numbers: 3 5 7 2 Target: 26 Expression:", ...],   # text -> list of str
   "target": np.array([26, ...], np.int32),                        # numeric scalars -> [B] array
   "numbers": np.array([[3, 5, 7, 2], ...], np.int32),             # equal-length numeric sequences -> [B, L]
   "solutions": [["3*7+5", ...], ...]}                             # text sequences -> list of lists of str

Checkpointing. The iterator's position is a small JSON-able dict; restoring it makes a resumed run see
exactly the batches it would have seen. The loader must be rebuilt with the same arguments (same prepared
dataset, split, batch size, seed, shuffle, epochs and sharding); nothing checks that, so store them with the
run's config:

  iterator = iter(prompt_loader(builder, "train", batch_size=8, seed=0))
  state = iterator.get_state()            # e.g. {"next_index": 12}; save it with the model checkpoint
  ...
  iterator = iter(prompt_loader(builder, "train", batch_size=8, seed=0))
  iterator.set_state(state)               # continues where the saved run was

With orbax, store `json.dumps(state)` yourself, or let orbax call the iterator: for a `CheckpointManager`,
register `grain.checkpoint.CheckpointHandler` under an item name (e.g. "data_iterator") and pass
`grain.checkpoint.CheckpointSave(iterator)` / `grain.checkpoint.CheckpointRestore(iterator)` as that item's
args. It writes one `process_<i>-of-<n>.json` per JAX process, since each iterator holds its own shard. The
iterator also implements orbax's v1 `save` / `load` checkpointable protocol.

Preparing. `prepare_offline(builder)` writes a builder's splits into its `data_dir` once, never downloading.
Several processes must not prepare the same directory at the same time: prepare on one process (or on each
host's local disk) before the others read.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

_DOWNLOAD_CONFIG_OPTIONS = {"try_download_gcs": False}  # Generated or local data only: never fetch from GCS.


def prepare_offline(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
  """Writes `builder`'s splits as array_record files into its data_dir, unless they are there already.

  The builder's `_split_generators` must not download (ours generate data or read a local file); this also
  turns off tfds' fetching of prepared datasets from GCS.

  Returns:
    The same builder, prepared (its `info` now describes the written splits).
  """
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(**_DOWNLOAD_CONFIG_OPTIONS), file_format="array_record")
  return builder


def decode_record(record: Mapping[str, Any]) -> dict[str, Any]:
  """A record read from a tfds data source as plain values.

  Text (bytes) becomes str, numeric scalars are kept, numeric sequences become 1-D numpy arrays and sequences
  of text become lists of str.
  """
  return {key: _decode_value(value) for key, value in record.items()}


def _decode_value(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
    return [_decode_value(item) for item in value.tolist()]
  if isinstance(value, (list, tuple)):
    items = [_decode_value(item) for item in value]
    if items and all(_is_number(item) for item in items):
      return np.asarray(items)
    return items
  return value


def _is_number(value: Any) -> bool:
  if isinstance(value, (bool, np.bool_, str, bytes)):
    return False
  return isinstance(value, (numbers.Number, np.generic))


def collate_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Columns of a batch of decoded records (all with the same keys).

  Numeric scalars become a `[B]` numpy array, numeric arrays of one shape a stacked `[B, ...]` array; anything
  else (text, ragged arrays, lists of text) becomes a list of the per-record values.

  Raises:
    ValueError: The records do not all have the same keys.
  """
  if not records:
    return {}
  keys = list(records[0])
  for index, record in enumerate(records):
    if list(record) != keys:
      raise ValueError(f"record {index} of the batch has keys {sorted(record)}, the first has {sorted(keys)}")
  batch = {}
  for key in keys:
    values = [record[key] for record in records]
    if all(_is_number(value) for value in values):
      batch[key] = np.asarray(values)
    elif all(isinstance(value, np.ndarray) and value.dtype.kind in "biuf" for value in values) and len(
        {value.shape for value in values}) == 1:
      batch[key] = np.stack(values)
    else:
      batch[key] = values
  return batch


class PromptSource:
  """Random access to one split of a prepared builder, records decoded by `decode_record`.

  Numeric scalar features keep their declared dtype (e.g. int32). The `repr` names the dataset (name, config,
  version), split and size, not the directory.
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str):
    if not isinstance(split, str):
      raise TypeError(f"split must be a str such as 'train', got {split!r}")
    available = sorted(builder.info.splits.keys())
    if not available:
      raise ValueError(f"{builder.info.full_name} has no prepared splits in {builder.data_dir}: prepare it "
                       "first (a task's prepare_data, prepare_jsonl_prompts or prepare_offline)")
    self._source = builder.as_data_source(split)  # tfds: ValueError naming the available splits
    self._description = f"{builder.info.full_name}[{split}]"
    self.split = split
    # tfds hands numeric scalars back as Python numbers: keep their declared dtype (e.g. int32).
    self._scalar_dtypes = {key: np.dtype(feature.np_dtype) for key, feature in builder.info.features.items()
                           if feature.shape == () and np.dtype(feature.np_dtype).kind in "biuf"}

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = decode_record(self._source[index])
    for key, dtype in self._scalar_dtypes.items():
      record[key] = dtype.type(record[key])
    return record

  def __repr__(self) -> str:
    return f"PromptSource({self._description}, {len(self)} records)"


class _ShardStream:
  """Record `i` of one process's stream: epoch `i // n` of its shard `[start, end)`, in that epoch's order.

  Epoch `e` is shuffled by `np.random.default_rng([seed, e])`, so the stream is a pure function of the index:
  a saved position restores exactly. (grain's own `shuffle` is the same idea, but its index permutation costs
  milliseconds per record on shards of a few records.)
  """

  def __init__(self, source: PromptSource, start: int, end: int, *, seed: int, shuffle: bool,
               num_epochs: int | None):
    self._source = source
    self._start = start
    self._size = end - start
    self._seed = seed
    self._shuffle = shuffle
    # "Forever" is 2**62 records: grain adds to the length, so sys.maxsize itself overflows (batch_size=1).
    self._length = 2**62 if num_epochs is None else self._size * num_epochs
    self._orders: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return self._length

  def _order(self, epoch: int) -> np.ndarray:
    order = self._orders.get(epoch)
    if order is None:
      order = np.random.default_rng([self._seed, epoch]).permutation(self._size)
      self._orders = {epoch: order}  # Streams are read in order: keep only the current epoch.
    return order

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = operator.index(index)
    if not 0 <= index < self._length:
      raise IndexError(f"index {index} is outside the stream of {self._length} records")
    epoch, position = divmod(index, self._size)
    if self._shuffle:
      position = int(self._order(epoch)[position])
    return self._source[self._start + position]

  def __repr__(self) -> str:
    return f"_ShardStream({self._source!r}, [{self._start}, {self._start + self._size}), seed={self._seed})"


def shard_bounds(num_records: int, shard_index: int, shard_count: int) -> tuple[int, int]:
  """`[start, end)` of a shard: contiguous, disjoint, covering all records, sizes differing by at most one."""
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got shard_index={shard_index}, "
                     f"shard_count={shard_count}")
  return (num_records * shard_index // shard_count, num_records * (shard_index + 1) // shard_count)


def prompt_loader(builder: tfds.core.DatasetBuilder, split: str, *, batch_size: int, seed: int,
                  shuffle: bool = True, num_epochs: int | None = None, drop_remainder: bool = False,
                  shard_index: int | None = None, shard_count: int | None = None,
                  prefetch_batches: int = 2) -> grain.IterDataset:
  """Batches (dicts of columns, see `collate_records`) from one split of a prepared builder, resumable.

  The pipeline is `grain.MapDataset.source(stream).batch(...)` over this process's stream of records (its
  shard, reshuffled every epoch), read in order by one background thread. (A `grain.DataLoader` with an
  `IndexSampler` is the older route, but for a finite `num_epochs` it silently drops records when the shards
  are uneven: grain 0.2 gives every shard `len(sampler) // shard_count` records.)

  Args:
    builder: A prepared tfds builder (e.g. from a task's `prepare_data` or `prepare_jsonl_prompts`).
    split: The split to read, e.g. "train".
    batch_size: Records per batch (per process).
    seed: Shuffle seed, a non-negative int; each epoch has its own order (`np.random.default_rng([seed,
      epoch])`).
    shuffle: Shuffle the records (within this process's shard).
    num_epochs: Passes over the shard; None repeats forever (batches then run across epoch boundaries).
    drop_remainder: Drop a last batch smaller than `batch_size` (only happens with a finite `num_epochs`).
    shard_index: This process's shard; defaults to `jax.process_index()` (read when called).
    shard_count: Number of shards; defaults to `jax.process_count()`. Shards are contiguous disjoint slices
      (`shard_bounds`) that together cover every record; their sizes differ by at most one.
    prefetch_batches: Batches read ahead in a background thread (0: read when asked).

  Returns:
    A `grain.IterDataset`: `iter(loader)` gives a `grain.DatasetIterator` with `get_state()` (a JSON-able
    dict) and `set_state(state)`; see the module docstring for checkpointing.

  Raises:
    ValueError: A bad argument, or a split the builder does not have.
  """
  for name, value in (("batch_size", batch_size), ("seed", seed), ("prefetch_batches", prefetch_batches)):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
      raise ValueError(f"{name} must be an int, got {value!r}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if seed < 0:
    raise ValueError(f"seed must be a non-negative int, got {seed}")
  if prefetch_batches < 0:
    raise ValueError(f"prefetch_batches must be >= 0, got {prefetch_batches}")
  if num_epochs is not None and (isinstance(num_epochs, bool) or not isinstance(num_epochs, numbers.Integral)
                                 or num_epochs < 1):
    raise ValueError(f"num_epochs must be a positive int or None, got {num_epochs!r}")
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  source = PromptSource(builder, split)
  start, end = shard_bounds(len(source), shard_index, shard_count)
  if start == end:
    raise ValueError(
        f"{source!r} has fewer records than the {shard_count} shards: shard {shard_index} is empty")
  stream = _ShardStream(source, start, end, seed=int(seed), shuffle=shuffle, num_epochs=num_epochs)
  dataset = grain.MapDataset.source(stream).batch(int(batch_size), drop_remainder=drop_remainder,
                                                  batch_fn=collate_records)
  read_options = grain.ReadOptions(num_threads=1 if prefetch_batches else 0,
                                   prefetch_buffer_size=int(prefetch_batches))
  return dataset.to_iter_dataset(read_options)

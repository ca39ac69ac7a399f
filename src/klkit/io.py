"""Files of per-sequence rows in, result rows out, in bounded memory.

Reading: Parquet files (a file, a directory of them, or a glob), Arrow IPC
files (Feather v2 / ``.arrow``) and JSON Lines, one batch at a time: a
slice of a Parquet row group of about ``TOKENS_PER_BATCH`` list values
(its pages streamed through a ``READ_BUFFER`` buffer rather than the whole
column chunk loaded), an IPC record batch, a JSON block.  Only the columns
asked for are decoded, and ``map_units`` spreads the units (row groups,
IPC batches, files) over threads.  Writing: Parquet, Arrow IPC, CSV or
JSON Lines by the output's extension, batch by batch (Parquet and Arrow in
row groups of about ``OUTPUT_ROWS`` rows), to a temporary name in the same
directory that is renamed when the job ends well (an interrupted or failed
run never leaves a file that looks complete).

pyarrow is needed (``pip install "klkit[cli]"``).  A file that cannot be
read as asked raises SourceError, with a one-line message naming it.
"""
import glob
import itertools
import json
import os
import queue
import threading
import time
from typing import Iterator, NamedTuple

try:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.ipc as pa_ipc
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('klkit.io needs pyarrow: pip install "klkit[cli]"') from exc

PARQUET = (".parquet", ".pq", ".parq")
ARROW = (".arrow", ".feather", ".ipc", ".arrows")
JSONL = (".jsonl", ".ndjson", ".json")
#: bytes of JSON text parsed per batch
JSON_BLOCK = 16 << 20
#: list values (tokens) per Parquet batch: small enough for the cache and
#: for memory, large enough that the per-batch overhead stays small
TOKENS_PER_BATCH = 1 << 18
#: bytes read from a Parquet file at a time (pages are streamed)
READ_BUFFER = 1 << 20
#: result rows per row group (Parquet) or record batch (Arrow) written
OUTPUT_ROWS = 1 << 16


class SourceError(Exception):
    """A file that cannot be read as asked (its name is in the message)."""


class Batch(NamedTuple):
    """One batch of rows of a file: its file, its index in the file (the
    row group of a Parquet file), the file row of its first row, and the
    record batch of the columns asked for."""
    file: str
    index: int
    row0: int
    data: pa.RecordBatch


def expand(paths):
    """The files behind ``paths`` (files, directories of Parquet files,
    glob patterns), each once, in the order given (sorted within a
    directory or a pattern)."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(PARQUET))
            if not found:
                raise SourceError(f"{p}: a directory without Parquet files")
        elif os.path.exists(p):
            found = [p]
        else:
            found = sorted(glob.glob(p))
            if not found:
                raise SourceError(f"{p}: no such file" + (" (nor files matching it)"
                                                          if glob.has_magic(p) else ""))
        files += [f for f in found if f not in files]
    return files


def _format(path):
    ext = os.path.splitext(path)[1].lower()
    for fmt, exts in (("parquet", PARQUET), ("arrow", ARROW), ("jsonl", JSONL)):
        if ext in exts:
            return fmt
    raise SourceError(f"{path}: unknown file type {ext or '(no extension)'}; expected Parquet "
                      f"({', '.join(PARQUET)}), Arrow IPC ({', '.join(ARROW)}) or JSON Lines "
                      f"({', '.join(JSONL)})")


class Unit(NamedTuple):
    """A part of a file that one worker reads on its own: a Parquet row
    group, an Arrow IPC record batch, or a whole JSON Lines file / IPC
    stream; ``row0`` is the file row of its first row."""
    index: int
    row0: int
    rows: int


class Source:
    """One input file: its schema, its size, its units and their batches."""

    def __init__(self, path):
        self.path, self.format = path, _format(path)
        self.bytes = os.path.getsize(path)
        try:
            if self.format == "parquet":
                self._pf = pq.ParquetFile(path, buffer_size=READ_BUFFER, pre_buffer=False)
                self.schema = self._pf.schema_arrow
                md = self._pf.metadata
                counts = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
            elif self.format == "arrow":
                ipc = _open_ipc(path)
                self.schema = ipc.schema
                self._ipc_readers = {}            # columns -> a reader of those fields
                counts = (_ipc_batch_rows(path, self.schema)
                          if isinstance(ipc, pa_ipc.RecordBatchFileReader) else None)
            else:
                self.schema = self._json().schema
                counts = None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise SourceError(f"{path}: not a readable {self.format} file ({_first_line(exc)})") \
                from None
        if counts is None:                    # read in one sequential pass
            self.rows = None
            self.units = [Unit(0, 0, None)]
        else:
            self.rows = sum(counts)
            starts = [0] + list(itertools.accumulate(counts))[:-1]
            self.units = [Unit(i, r0, n) for i, (r0, n) in enumerate(zip(starts, counts))]

    def _json(self, use_threads=True):
        return pa_json.open_json(self.path, read_options=pa_json.ReadOptions(
            block_size=JSON_BLOCK, use_threads=use_threads))

    def batches(self, columns, units=None, use_threads=True) -> Iterator[Batch]:
        """The columns asked for, batch by batch, of the given units (default
        all).  A Batch's index is its unit's: a Parquet row group (read in
        slices of about TOKENS_PER_BATCH values), an IPC record batch; a
        JSON block, or a batch of an IPC stream, is numbered in the file.
        use_threads: pyarrow decodes a batch's columns in parallel."""
        row0 = 0
        try:
            for unit in self.units if units is None else units:
                row0 = unit.row0
                for index, b in self._unit_batches(unit, columns, use_threads):
                    yield Batch(self.path, index, row0, b)
                    row0 += b.num_rows
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise SourceError(f"{self.path}: unreadable after row {row0} "
                              f"({_first_line(exc)})") from None

    def _unit_batches(self, unit, columns, use_threads):
        if self.format == "parquet":
            rows = _rows_per_batch(self._pf.metadata.row_group(unit.index), columns)
            for b in self._pf.iter_batches(batch_size=rows, row_groups=[unit.index],
                                           columns=columns, use_threads=use_threads):
                yield unit.index, b
        elif self.rows is not None:           # an IPC file: its record batches
            key = tuple(columns)
            if key not in self._ipc_readers:
                self._ipc_readers[key] = _open_ipc(self.path, self._fields(columns))
            yield unit.index, self._ipc_readers[key].get_batch(unit.index).select(columns)
        else:                                 # an IPC stream, a JSON Lines file
            reader = (_open_ipc(self.path, self._fields(columns)) if self.format == "arrow"
                      else self._json(use_threads))
            for i, b in enumerate(reader):
                yield i, b.select(columns)

    def _fields(self, columns):
        """The schema positions of the columns (those it has)."""
        return sorted({i for c in columns for i in self.schema.get_all_field_indices(c)})


def map_units(work, columns, fn, threads=2, depth=4):
    """fn(batch) of every batch of the units of ``work`` (a list of
    (Source, Unit), in file order), on ``threads`` threads that each take
    the next unit, decode its batches one at a time (its columns in turn)
    and apply fn to each while it is hot in the cache: several units at
    once keep the cores busier than pyarrow's per-column threads, and
    pyarrow and klkit's kernels release the GIL.

    Yields (k, value, read s, fn s) in file order, k the unit's position
    in ``work``; an exception raised reading a unit or in fn is raised
    here when that unit's turn comes, so the first error in file order is
    the one seen, whichever thread met it.  A thread starts a unit at most
    2 * threads units ahead of the one in order, and at most ``depth``
    values wait in the queue, so what is held does not grow with the
    input.  Closing the generator stops the threads and waits for them."""
    q = queue.Queue(depth)
    stop = threading.Event()
    turn = threading.Condition()
    state = {"claim": 0, "head": 0}       # the next unit to take; the unit in order
    ahead = 2 * threads

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def next_unit():
        with turn:
            while not stop.is_set() and state["claim"] >= state["head"] + ahead:
                turn.wait(0.1)
            k = state["claim"]
            state["claim"] += 1
            return k

    def worker():
        current = None                    # this thread's own Source of the file it reads
        while True:
            k = next_unit()
            if stop.is_set() or k >= len(work):
                current = None
                put(None)
                return
            src, unit = work[k]
            try:
                if current is None or current.path != src.path:
                    current = None        # one file open per thread at a time
                    current = Source(src.path)
                batches = current.batches(columns, [unit], use_threads=False)
                while True:
                    t0 = time.perf_counter()
                    batch = next(batches, None)
                    t1 = time.perf_counter()
                    if batch is None:
                        break
                    value = fn(batch)
                    if not put((k, (value, t1 - t0, time.perf_counter() - t1))):
                        return
                item = (k, None)
            except BaseException as exc:  # noqa: BLE001 - any exception fn raises, in order
                item = (k, exc)
            if not put(item):
                return

    pool = [threading.Thread(target=worker, name=f"klkit-unit-{i}", daemon=True)
            for i in range(max(1, min(threads, len(work))))]
    for t in pool:
        t.start()
    held = {}                             # unit -> its values so far, then None (end) or an error
    try:
        running = len(pool)
        while running:
            item = q.get()
            if item is None:
                running -= 1
                continue
            k, got = item
            held.setdefault(k, []).append(got)
            while state["head"] in held:
                h = state["head"]
                values = held[h]
                while values and isinstance(values[0], tuple):
                    yield (h,) + values.pop(0)
                if not values:
                    break                 # the unit in order has not ended
                if values[0] is not None:
                    raise values[0]
                del held[h]
                with turn:
                    state["head"] += 1
                    turn.notify_all()
    finally:
        stop.set()
        with turn:
            turn.notify_all()
        for t in pool:
            t.join()


def _open_ipc(path, fields=None):
    """An Arrow IPC file (random access), else an IPC stream; read through
    ordinary file reads, so only the batch being read is in memory, and of
    it only the fields at the given schema positions (default all)."""
    options = pa_ipc.IpcReadOptions(included_fields=fields) if fields is not None else None
    try:
        return pa_ipc.open_file(pa.OSFile(path), options=options)
    except pa.ArrowInvalid:
        return pa_ipc.open_stream(pa.OSFile(path), options=options)


def _ipc_batch_rows(path, schema):
    """The row count of each record batch of an Arrow IPC file, from a
    memory map and one field (a fixed-width one where there is one): only
    the batches' headers and that field are touched (in a compressed file,
    decompressed), not every batch whole."""
    fixed = [i for i, f in enumerate(schema) if pa.types.is_primitive(f.type)]
    options = pa_ipc.IpcReadOptions(included_fields=[fixed[0] if fixed else 0])
    with pa.memory_map(path) as m:
        r = pa_ipc.open_file(m, options=options)
        return [r.get_batch(i).num_rows for i in range(r.num_record_batches)]


def _rows_per_batch(group, columns):
    """Rows of a Parquet row group that hold about TOKENS_PER_BATCH values
    of its longest list column among ``columns`` (from the metadata)."""
    values = max((group.column(i).num_values for i in range(group.num_columns)
                  if group.column(i).path_in_schema.split(".")[0] in columns), default=0)
    per_row = max(1, values // max(1, group.num_rows))
    return max(1, TOKENS_PER_BATCH // per_row)


def _first_line(exc):
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------

OUTPUTS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".json": "jsonl", ".arrow": "arrow", ".feather": "arrow"}


def output_format(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUTS:
        raise SourceError(f"{path}: unknown output type {ext or '(no extension)'}; expected "
                          f"{', '.join(sorted(OUTPUTS))}")
    return OUTPUTS[ext]


class ResultWriter:
    """Result rows written batch by batch to a temporary file beside
    ``path``, renamed to ``path`` by ``commit()``; ``discard()`` (or
    leaving a ``with`` block by an exception) removes it.  Parquet and
    Arrow output gather batches into row groups of about OUTPUT_ROWS rows."""

    def __init__(self, path):
        self.path, self.format = path, output_format(path)
        head, tail = os.path.split(os.path.abspath(path))
        if not os.path.isdir(head):
            raise SourceError(f"{path}: no such directory {head}")
        self.tmp = os.path.join(head, f".{tail}.{os.getpid()}.partial")
        self._writer = None
        self._file = None
        self._held = []
        self._schema = None

    def write(self, batch):
        if self._schema is None:
            self._schema = batch.schema
        elif batch.schema != self._schema:
            try:
                batch = batch.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise SourceError(f"{self.path}: the rows of one input do not fit the columns "
                                  f"of the first ({_first_line(exc)})") from None
        if self.format == "jsonl":
            if self._file is None:
                self._file = open(self.tmp, "w", encoding="utf-8")
            for row in batch.to_pylist():       # JSON has no NaN: null
                row = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
                self._file.write(json.dumps(row) + "\n")
        elif self.format == "csv":
            self._open(batch.schema).write_batch(batch)
        else:
            self._held.append(batch)
            if sum(b.num_rows for b in self._held) >= OUTPUT_ROWS:
                self._flush()

    def _open(self, schema):
        if self._writer is None:
            if self.format == "parquet":
                # dictionary pages for text only: numbers (row, values) rarely
                # repeat, and trying costs twice the writing time
                text = [f.name for f in schema
                        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
                self._writer = pq.ParquetWriter(self.tmp, schema, use_dictionary=text)
            elif self.format == "arrow":
                self._writer = pa_ipc.new_file(self.tmp, schema)
            else:
                self._writer = pa_csv.CSVWriter(self.tmp, schema)
        return self._writer

    def _flush(self):
        if self._held:
            table = pa.Table.from_batches(self._held)
            self._open(table.schema).write_table(table, max(1, table.num_rows))
            self._held = []

    def _close(self):
        for f in (self._writer, self._file):
            if f is not None:
                f.close()
        self._writer = self._file = None
        self._held = []

    def commit(self, schema):
        """Close the file and give it its name (an empty result: a file
        with the header / schema only)."""
        if self._writer is None and self._file is None and not self._held:
            self.write(pa.RecordBatch.from_pylist([], schema=schema))
        self._flush()
        self._close()
        os.replace(self.tmp, self.path)

    def discard(self):
        self._close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.discard()
        return False

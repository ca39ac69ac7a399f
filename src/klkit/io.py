"""Files of per-sequence rows in, result rows out, in bounded memory.

Reading: Parquet files (a file, a directory of them, or a glob), Arrow IPC
files (Feather v2 / ``.arrow``, memory-mapped) and JSON Lines, one batch
at a time: a Parquet row group, an IPC record batch, a JSON block.  Only
the columns asked for are decoded.  Writing: Parquet, Arrow IPC, CSV or JSON
Lines by the output's extension, batch by batch (a Parquet row group each), to a temporary name in the same
directory that is renamed when the job ends well (an interrupted or failed
run never leaves a file that looks complete).

pyarrow is needed (``pip install "klkit[cli]"``).  A file that cannot be
read as asked raises SourceError, with a one-line message naming it.
"""
import glob
import json
import os
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
ARROW = (".arrow", ".feather", ".ipc")
JSONL = (".jsonl", ".ndjson", ".json")
#: bytes of JSON text parsed per batch
JSON_BLOCK = 16 << 20


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


class Source:
    """One input file: its schema, its size, and its batches."""

    def __init__(self, path):
        self.path, self.format = path, _format(path)
        self.bytes = os.path.getsize(path)
        try:
            if self.format == "parquet":
                self._pf = pq.ParquetFile(path)
                self.schema = self._pf.schema_arrow
                self.rows = self._pf.metadata.num_rows
            elif self.format == "arrow":
                self._reader = _open_ipc(path)
                self.schema = self._reader.schema
                self.rows = None
            else:
                self._reader = None
                self.schema = pa_json.open_json(path, read_options=pa_json.ReadOptions(
                    block_size=JSON_BLOCK)).schema
                self.rows = None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise SourceError(f"{path}: not a readable {self.format} file ({_first_line(exc)})") \
                from None

    def batches(self, columns) -> Iterator[Batch]:
        """The columns asked for, batch by batch (a row group at a time)."""
        row0 = 0
        try:
            if self.format == "parquet":
                for g in range(self._pf.num_row_groups):
                    table = self._pf.read_row_group(g, columns=columns)
                    yield Batch(self.path, g, row0, _one_batch(table))
                    row0 += table.num_rows
            elif self.format == "arrow":
                for i in range(self._reader.num_record_batches):
                    b = self._reader.get_batch(i).select(columns)
                    yield Batch(self.path, i, row0, b)
                    row0 += b.num_rows
            else:
                reader = pa_json.open_json(self.path, read_options=pa_json.ReadOptions(
                    block_size=JSON_BLOCK))
                for i, b in enumerate(reader):
                    b = b.select(columns)
                    yield Batch(self.path, i, row0, b)
                    row0 += b.num_rows
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise SourceError(f"{self.path}: unreadable after row {row0} "
                              f"({_first_line(exc)})") from None


def _open_ipc(path):
    """An Arrow IPC file, memory-mapped (zero-copy); the streaming format too."""
    source = pa.memory_map(path, "r")
    try:
        return pa_ipc.open_file(source)
    except pa.ArrowInvalid:
        return _StreamAsFile(pa_ipc.open_stream(pa.memory_map(path, "r")))


class _StreamAsFile:
    """An IPC stream read to its end (its batches are views of the map)."""

    def __init__(self, reader):
        self.schema = reader.schema
        self._batches = list(reader)
        self.num_record_batches = len(self._batches)

    def get_batch(self, i):
        return self._batches[i]


def _one_batch(table):
    """A table of one row group as a single record batch."""
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


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
    leaving a ``with`` block by an exception) removes it."""

    def __init__(self, path):
        self.path, self.format = path, output_format(path)
        head, tail = os.path.split(os.path.abspath(path))
        if not os.path.isdir(head):
            raise SourceError(f"{path}: no such directory {head}")
        self.tmp = os.path.join(head, f".{tail}.{os.getpid()}.partial")
        self._writer = None
        self._file = None

    def write(self, batch):
        if self.format == "jsonl":
            if self._file is None:
                self._file = open(self.tmp, "w", encoding="utf-8")
            for row in batch.to_pylist():       # JSON has no NaN: null
                row = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
                self._file.write(json.dumps(row) + "\n")
            return
        if self._writer is None:
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(self.tmp, batch.schema)
            elif self.format == "arrow":
                self._writer = pa_ipc.new_file(self.tmp, batch.schema)
            else:
                self._writer = pa_csv.CSVWriter(self.tmp, batch.schema)
        self._writer.write_batch(batch)

    def _close(self):
        for f in (self._writer, self._file):
            if f is not None:
                f.close()
        self._writer = self._file = None

    def commit(self, schema):
        """Close the file and give it its name (an empty result: a file
        with the header / schema only)."""
        if self._writer is None and self._file is None:
            self.write(pa.RecordBatch.from_pylist([], schema=schema))
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

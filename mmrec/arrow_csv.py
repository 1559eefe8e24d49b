"""The fast path for delimited interactions files: pyarrow's streaming CSV reader and
column-wise checks, so 10M rows read in seconds instead of a Python dict per row.

pyarrow, not polars: its reader streams in blocks, calls back on each malformed row
(so such a file can go to the exact reader instead of being misnumbered), and its
arrays go to numpy without copies; polars would bring a second columnar engine and its
own thread pool for the same job. Each block's text becomes integer codes into
vocabularies of distinct ids (:class:`Vocabulary`) and is then dropped, so memory grows
with the rows' numbers (about 30 bytes a row) and the distinct ids, not with the text.

The row-by-row reader in :mod:`mmrec.catalog` stays the reference: any file this path
cannot number exactly (a malformed row, a value spanning lines, not UTF-8) is handed
back to it, so problems are reported by the same line numbers and messages as before.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

BLOCK = 16 << 20  # bytes parsed at a time: the text held at once, whatever the file's size
HEADER_BLOCK = 1 << 20  # enough for any header line


class NeedsRowReader(Exception):
    """The file has something this path cannot number exactly: use the row-by-row reader."""


def read_batches(path: Path, delimiter: str, header: list[str] | None = None,
                 quoting: bool = True) -> Iterator[pa.RecordBatch]:
    """Every column as text, one row per physical line after the header, a block at a time.

    Raises NeedsRowReader, before yielding the block, where a block has a malformed row
    (pyarrow would skip it and misnumber the rest), and for a file that is not UTF-8.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    malformed = []
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoting else False,
                               ignore_empty_lines=False,
                               invalid_row_handler=lambda row: malformed.append(row) or "skip")
    read = pacsv.ReadOptions(block_size=BLOCK, column_names=header, skip_rows=1 if header else 0,
                             use_threads=False)
    try:
        names = _header(path, parse) if header is None else header
        convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                       strings_can_be_null=False, quoted_strings_can_be_null=False)
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        stripped = [n.strip() for n in reader.schema.names]
        for batch in reader:
            if malformed:
                raise NeedsRowReader
            yield batch.rename_columns(stripped)
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as exc:
        raise NeedsRowReader from exc
    if malformed:
        raise NeedsRowReader


def _header(path: Path, parse: Any) -> list[str]:
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(block_size=HEADER_BLOCK, use_threads=False)
    return list(pacsv.open_csv(path, read_options=read, parse_options=parse).schema.names)


def text(batch: pa.RecordBatch, name: str | None) -> pa.Array | None:
    import pyarrow.compute as pc

    return None if name is None else pc.utf8_trim_whitespace(batch.column(name))


def blank_lines(table: pa.RecordBatch) -> np.ndarray:
    """Rows that are empty lines (the csv module skips them without a word)."""
    import numpy as np
    import pyarrow.compute as pc

    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= pc.equal(column, "").to_numpy(zero_copy_only=False)
    return blank


def numbers(column: pa.Array | None, parse: Callable[[Any], float],
            rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Values (NaN where empty) and a mask of values that do not parse as finite numbers.

    One vectorised cast when the whole column is numeric; otherwise ``parse`` (the
    row-by-row reader's own) value by value, e.g. for ISO 8601 dates.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if column is None:
        return np.full(rows, np.nan), np.zeros(rows, dtype=bool)
    empty = pc.equal(column, "").to_numpy(zero_copy_only=False)
    try:
        values = pc.cast(pc.if_else(pc.equal(column, ""), None, column), pa.float64())
        values = values.to_numpy(zero_copy_only=False).astype(np.float64)
        return values, ~empty & ~np.isfinite(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _parse_each(column.to_pylist(), parse)


def _parse_each(values: list[str], parse: Callable[[Any], float]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    out, bad = np.full(len(values), np.nan), np.zeros(len(values), dtype=bool)
    for n, value in enumerate(values):
        if value == "":
            continue
        try:
            out[n] = parse(value)
        except (TypeError, ValueError, OverflowError):
            bad[n] = True
    return out, bad


class Vocabulary:
    """Distinct strings in order of first appearance, built block by block: each row
    becomes an integer code, so no Python string per row is ever made."""

    def __init__(self) -> None:
        import pyarrow as pa

        self.values = pa.array([], pa.string())

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, column: pa.Array) -> np.ndarray:
        """The code of every value of ``column``; values not seen before are appended."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(column)  # the block's distinct values, first appearance
        local = encoded.dictionary
        known = pc.fill_null(pc.index_in(local, value_set=self.values), -1).to_numpy()
        new = known < 0
        codes = np.where(new, len(self.values) + np.cumsum(new) - 1, known).astype(np.int32)
        if new.any():
            self.values = pa.concat_arrays([self.values, local.filter(pa.array(new))])
        return codes[encoded.indices.to_numpy(zero_copy_only=False)]  # 4 bytes a row

    def positions_in(self, ids: list[str]) -> np.ndarray:
        """For each value, its position in ``ids`` (the first, -1 where absent): one lookup."""
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.index_in(self.values, value_set=pa.array(ids, pa.string()))
        return pc.fill_null(found, -1).to_numpy().astype("int32")

    def names(self, codes: np.ndarray) -> list[str]:
        import pyarrow as pa

        return self.values.take(pa.array(codes, "int64")).to_pylist()


def first_appearance(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``codes`` renumbered by first appearance, and the old code of each new one."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(pa.array(codes, "int64"))
    return (encoded.indices.to_numpy().astype(np.int64),
            encoded.dictionary.to_numpy().astype(np.int64))


def first_of_pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the first occurrence of each (user, item) code pair.

    A stable sort of one int64 key per row: three such arrays at the peak, where a hash
    of 10M distinct keys takes several times that.
    """
    import numpy as np

    if not len(users):
        return np.zeros(0, dtype=np.int64)
    keys = users.astype(np.int64) * (int(items.max()) + 1) + items
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[order[1:][keys[1:] == keys[:-1]]] = True  # stable: the earlier row sorts first
    return np.flatnonzero(~repeat)

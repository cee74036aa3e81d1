"""Clip embeddings as one table, and back: what connects `decar embed` to `decar evaluate` and to other tools.

Three forms hold the same thing, one float32 embedding per audio file:

- a `decar embed` output folder: ``manifest.csv`` plus one ``.npy`` per file (the resumable working form);
- ``embeddings.npz``: arrays ``files`` (str, N) and ``embeddings`` (float32, N x D);
- ``embeddings.parquet``: columns ``file`` (string) and ``embedding`` (fixed-size list of float32); needs pyarrow
  (``pip install 'decar[parquet]'``).

Files are named by absolute path (`decar embed` writes them so); a relative name in a table made elsewhere is
taken relative to the table's folder.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from decar._io import atomic_write, atomic_write_bytes

TABLE_FORMATS = ("npz", "parquet")
TABLE_NAME = "embeddings"
_PARQUET_HINT = "parquet tables need pyarrow: pip install 'decar[parquet]' (or pyarrow)"


class EmbeddingTableError(ValueError):
    """A table or embedding folder that cannot be read or written; the message names the file and the problem."""


def write_table(path: Path, files: list[str], embeddings: np.ndarray) -> Path:
    """Write ``files`` and their ``embeddings`` (N x D float32) as one table; the suffix picks the format."""
    path = Path(path)
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != len(files):
        raise EmbeddingTableError(f"{path}: need an N x D matrix for {len(files)} files, got shape {matrix.shape}")
    if path.suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, files=np.array(files, dtype=str), embeddings=matrix)
        atomic_write_bytes(path, buffer.getvalue())
    elif path.suffix == ".parquet":
        pa, pq = _pyarrow(path)
        column = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
        table = pa.table({"file": pa.array(files, pa.string()), "embedding": column})
        atomic_write(path, lambda handle: pq.write_table(table, handle))
    else:
        raise EmbeddingTableError(f"{path}: unknown table format {path.suffix!r}; use .npz or .parquet")
    return path


def read_embeddings(source: Path) -> tuple[dict[Path, np.ndarray], dict[Path, str]]:
    """Every embedding in a `decar embed` folder or a table, keyed by the audio file's absolute path, and the
    files a `decar embed` run failed on, with its reason (tables list only embeddings).

    Raises:
        EmbeddingTableError: the source is missing, of an unknown kind, malformed, or holds frame embeddings.
    """
    source = Path(source)
    if source.is_dir():
        return _read_folder(source)
    if not source.is_file():
        raise EmbeddingTableError(f"{source}: no such embedding folder or table")
    if source.suffix == ".npz":
        files, matrix = _read_npz(source)
    elif source.suffix == ".parquet":
        files, matrix = _read_parquet(source)
    else:
        raise EmbeddingTableError(f"{source}: not an embedding table (.npz, .parquet) or a `decar embed` folder")
    if matrix.ndim != 2 or len(matrix) != len(files):
        raise EmbeddingTableError(f"{source}: {len(files)} files but embeddings of shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise EmbeddingTableError(f"{source}: {int((~np.isfinite(matrix).all(axis=1)).sum())} rows hold NaN or Inf")
    keys = [_absolute(name, source.parent) for name in files]
    if len(set(keys)) != len(keys):
        raise EmbeddingTableError(f"{source}: a file is listed more than once")
    return dict(zip(keys, matrix.astype(np.float32, copy=False), strict=True)), {}


def folder_table(folder: Path, table_format: str) -> Path:
    """Gather a `decar embed` folder's clip embeddings into ``folder/embeddings.<format>``."""
    if table_format not in TABLE_FORMATS:
        raise EmbeddingTableError(f"unknown table format {table_format!r}; choose from {', '.join(TABLE_FORMATS)}")
    embeddings, _failed = _read_folder(folder)
    if not embeddings:
        raise EmbeddingTableError(f"{folder}: no embedding to put in a table (every file failed)")
    files = sorted(embeddings)
    return write_table(
        folder / f"{TABLE_NAME}.{table_format}", [str(f) for f in files], np.stack([embeddings[f] for f in files])
    )


def _read_folder(folder: Path) -> tuple[dict[Path, np.ndarray], dict[Path, str]]:
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise EmbeddingTableError(f"{folder}: no manifest.csv, so not a `decar embed` output folder")
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    found: dict[Path, np.ndarray] = {}
    failed: dict[Path, str] = {}
    for row in rows:
        if row.get("status") not in ("ok", "skipped_existing"):
            failed[_absolute(row["input"], folder)] = f"decar embed failed on it: {row.get('error') or 'no reason'}"
            continue
        output = folder / row["output"]
        if output.suffix != ".npy":
            raise EmbeddingTableError(
                f"{output}: frame embeddings; tables and evaluation take clip embeddings "
                "(`decar embed` without --frames)"
            )
        try:
            vector = np.load(output, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise EmbeddingTableError(f"{output}: unreadable embedding ({err})") from err
        if vector.ndim != 1 or not np.isfinite(vector).all():
            raise EmbeddingTableError(f"{output}: not a finite 1-D embedding (shape {vector.shape})")
        found[_absolute(row["input"], folder)] = vector.astype(np.float32, copy=False)
    return found, failed


def _read_npz(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"files", "embeddings"} - set(data.files)
            if missing:
                raise EmbeddingTableError(f"{path}: missing array(s) {sorted(missing)}; need 'files' and 'embeddings'")
            return [str(name) for name in data["files"]], np.asarray(data["embeddings"])
    except (OSError, ValueError) as err:
        if isinstance(err, EmbeddingTableError):
            raise
        raise EmbeddingTableError(f"{path}: not a readable .npz ({err})") from err


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray]:
    pa, pq = _pyarrow(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise EmbeddingTableError(f"{path}: not a readable parquet file ({err})") from err
    missing = {"file", "embedding"} - set(table.column_names)
    if missing:
        raise EmbeddingTableError(f"{path}: missing column(s) {sorted(missing)}; need 'file' and 'embedding'")
    rows = table.column("embedding").to_pylist()
    if len({len(row) for row in rows}) > 1:
        raise EmbeddingTableError(f"{path}: embeddings of different lengths")
    return [str(name) for name in table.column("file").to_pylist()], np.asarray(rows, dtype=np.float32)


def _absolute(name: str, base: Path) -> Path:
    path = Path(name).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _pyarrow(path: Path) -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, or a clear error naming the file that needs them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise EmbeddingTableError(f"{path}: {_PARQUET_HINT}") from err
    return pa, pq

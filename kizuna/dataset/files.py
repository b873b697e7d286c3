"""Atomic file writes, hashes, and the small metadata files (info, stats, tasks).

Every file of a dataset is written under a temporary name in its final folder and moved into
place with ``os.replace`` (atomic on POSIX), so a reader, or a process killed half-way, only
ever sees a whole old file or a whole new one. Temporary names start with a dot and end in
``.tmp``: LeRobot's loader globs ``*/*.parquet`` and never sees them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kizuna.dataset.format import TASKS_PATH

TMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    """The temporary sibling a file is written to before it is moved into place."""
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Path], None], sync: bool = False) -> None:
    """Run ``write(tmp)`` then move ``tmp`` onto ``path``; a failure leaves ``path`` untouched.

    ``sync`` also flushes the file and its folder to the disk (power-loss safety); a killed
    process needs no sync, since the kernel keeps what was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        if sync:
            fsync_path(tmp)
        os.replace(tmp, path)
        if sync:
            fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any, sync: bool = False) -> None:
    text = json.dumps(data, indent=4, ensure_ascii=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), sync)


def write_parquet(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, compression="snappy")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temp_files(root: Path) -> Iterator[Path]:
    """Temporary files a killed writer left behind, anywhere under the dataset's folders."""
    for folder in ("meta", "data", "videos"):
        yield from (root / folder).rglob(f".*{TMP_SUFFIX}")


# ---- meta/tasks.parquet --------------------------------------------------------------------
# LeRobot reads this file with pandas and looks tasks up by the DataFrame's index (the task
# string), by position (iloc[task_index]). kizuna does not depend on pandas, so the pandas
# metadata that turns the "task" column back into that index is written by hand.


def _pandas_metadata() -> bytes:
    def column(name: str, pandas_type: str, numpy_type: str) -> dict[str, Any]:
        return {
            "name": name,
            "field_name": name,
            "pandas_type": pandas_type,
            "numpy_type": numpy_type,
            "metadata": None,
        }

    meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [column("task_index", "int64", "int64"), column("task", "unicode", "object")],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    return json.dumps(meta).encode()


TASKS_SCHEMA = pa.schema(
    [("task_index", pa.int64()), ("task", pa.string())], metadata={b"pandas": _pandas_metadata()}
)


def tasks_table(tasks: Sequence[str]) -> pa.Table:
    """Tasks in task_index order (row i is task i, as LeRobot's positional lookup needs)."""
    return pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks)},
        schema=TASKS_SCHEMA,
    )


def write_tasks(root: Path, tasks: Sequence[str], sync: bool = False) -> None:
    write_atomic(root / TASKS_PATH, lambda tmp: write_parquet(tmp, tasks_table(tasks)), sync)


def read_tasks(root: Path) -> list[str]:
    """Task strings by task_index."""
    table = pq.read_table(root / TASKS_PATH)
    order = sorted(zip(table["task_index"].to_pylist(), table["task"].to_pylist(), strict=True))
    return [task for _, task in order]

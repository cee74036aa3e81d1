"""Embed a corpus to one file per clip: resumable, bad files listed instead of fatal, clips batched across files.

Output layout (``out_dir``), one output per audio file, named after the audio file's full name so that
``a.wav`` and ``a.flac`` never collide:

- a folder input ``D``: ``D/x/y.wav`` → ``out_dir/x/y.wav.npy`` (path inside ``D``; ``D``'s own name is dropped);
- a list file ``L``: an entry ``x/y.wav`` (relative to ``L``'s folder, as in the list) → ``out_dir/x/y.wav.npy``;
  an entry outside ``L``'s folder keeps its absolute path without the root, ``/data/y.wav`` → ``data/y.wav.npy``;
- a single file ``x/y.wav`` → ``out_dir/y.wav.npy``.

Clip mode writes ``.npy`` float32 ``(D,)``; frame mode (``frames=True``) writes ``.npz`` with ``embedding``
float32 ``(T', D)`` and ``timestamps_ms`` float64 ``(T',)``. The same file reached through two inputs is
embedded once; two different files that map to the same output are refused before anything runs.

``out_dir/manifest.csv`` has one row per output (cumulative over runs) with the columns of
:data:`MANIFEST_COLUMNS`: ``input`` (absolute audio path), ``output`` (relative to ``out_dir``), ``status``
(``ok`` / ``skipped_existing`` / ``failed``), ``duration_s``, ``shape`` (e.g. ``1280`` or ``63x1280``),
``model`` (:func:`model_fingerprint` of the model that wrote it) and ``error`` (reason of a failure).
Outputs and the manifest are written atomically (temp file + ``os.replace``), the manifest at least every
few seconds and when the run ends, so a killed run resumes where it stopped: an existing output is skipped
only when its manifest row names the same model; an output without a row (written after the last manifest
update) is recomputed; an output the manifest attributes to another model (other weights, frontend, window or
inference precision) stops the run before any work unless ``overwrite=True``.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from decar._console import progress_bar
from decar._io import atomic_write
from decar._lock import output_lock
from decar.audio import AudioError, list_audio_files, load_audio
from decar.embed import AudioEncoder, long_enough
from decar.fingerprint import model_fingerprint
from decar.tables import TABLE_FORMATS, folder_table

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("input", "output", "status", "duration_s", "shape", "model", "error")
MANIFEST_INTERVAL_S = 5.0
"""Longest time between manifest rewrites (a rewrite costs the whole file, so not after every batch)."""
MAX_FAILED_SHOWN = 20
"""Failed files listed in the summary table; the manifest lists them all."""

OK, SKIPPED, FAILED = "ok", "skipped_existing", "failed"


class ModelMismatchError(ValueError):
    """Outputs in the folder were written by another model; mixing two models' embeddings is never wanted."""


@dataclass(frozen=True)
class _Job:
    """One audio file and where its embedding goes (relative to the output folder)."""

    audio: Path
    output: Path


@dataclass
class _Loaded:
    job: _Job
    clip: np.ndarray | None = None
    error: str | None = None


@dataclass
class ExtractionSummary:
    """What a run did; `failed` lists (audio file, reason).

    Attributes:
        out_dir: The output folder.
        manifest: Path of the manifest CSV.
        ok: Files embedded in this run.
        skipped_existing: Files whose output (same model) already existed.
        failed: (audio file, reason) of every file that could not be embedded.
        audio_seconds: Audio embedded in this run (skipped files excluded).
        wall_seconds: Duration of the run.
        table_path: the table of every clip embedding in the folder, when one was asked for.
    """

    out_dir: Path
    manifest: Path
    ok: int = 0
    skipped_existing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    table_path: Path | None = None

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio embedded per second of wall time (× real time)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def table(self) -> Table:
        """The summary as a rich table (failed files listed with their reasons)."""
        table = Table(title=escape(f"decar embed → {self.out_dir}"), show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("files ok", str(self.ok))
        table.add_row("files skipped (already embedded)", str(self.skipped_existing))
        table.add_row("files failed", f"[red]{len(self.failed)}[/]" if self.failed else "0")
        table.add_row("audio embedded", f"{self.audio_seconds / 3600:.3f} h")
        table.add_row("wall time", f"{self.wall_seconds:.1f} s")
        table.add_row("speed", f"{self.realtime_factor:.0f}× real time")
        table.add_row("manifest", escape(str(self.manifest)))
        if self.table_path is not None:
            table.add_row("table", escape(str(self.table_path)))
        for path, reason in self.failed[:MAX_FAILED_SHOWN]:
            table.add_row("[red]failed[/]", escape(f"{path}: {reason}"))
        if len(self.failed) > MAX_FAILED_SHOWN:
            table.add_row("[red]failed[/]", f"... and {len(self.failed) - MAX_FAILED_SHOWN} more (see the manifest)")
        return table


def _output_name(relative: Path, frames: bool) -> Path:
    return relative.with_name(relative.name + (".npz" if frames else ".npy"))


def _relative_to_list(path: Path, base: Path) -> Path:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(os.path.abspath(base))
    except ValueError:
        return absolute.relative_to(absolute.anchor)


def plan_outputs(inputs: Iterable[str | os.PathLike[str]], frames: bool = False) -> list[tuple[Path, Path]]:
    """(audio file, output path relative to the output folder) for every file the inputs name.

    Raises:
        FileNotFoundError: An input, or a file a list names, does not exist.
        ValueError: An input yields no audio, or two different files would share an output.
    """
    jobs: dict[Path, tuple[Path, Path]] = {}
    seen: set[str] = set()
    for source in inputs:
        source_path = Path(source).expanduser()
        files = list_audio_files(source_path)
        is_folder, is_single_file = source_path.is_dir(), files == [source_path]
        for audio in files:
            if is_folder:
                relative = audio.relative_to(source_path)
            elif is_single_file:
                relative = Path(audio.name)
            else:
                relative = _relative_to_list(audio, source_path.parent)
            key = os.path.abspath(audio)
            if key in seen:
                continue
            seen.add(key)
            output = _output_name(relative, frames)
            if output in jobs:
                raise ValueError(
                    f"'{jobs[output][0]}' and '{audio}' would both be written to '{output}'; "
                    "embed them into different output folders (or pass their common parent folder)"
                )
            jobs[output] = (Path(key), output)
    return list(jobs.values())


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    """Rows of an existing manifest keyed by output path (empty when there is none)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"'{path}' is not a decar embedding manifest (missing columns {sorted(missing)})")
        return {row["output"]: row for row in reader}


def _write_manifest(path: Path, rows: dict[str, dict[str, str]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows.values())
    data = text.getvalue().encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


def _load(job: _Job, sample_rate: int) -> _Loaded:
    try:
        # checked here: the encoder's own check would fail the whole batch
        return _Loaded(job, clip=long_enough(job.audio, load_audio(job.audio, sample_rate), sample_rate))
    except AudioError as err:
        return _Loaded(job, error=err.reason)
    except Exception as err:  # any other decoding problem is this file's, not the run's
        return _Loaded(job, error=f"{type(err).__name__}: {err}")


class _Extractor:
    """One run's state: the model, the manifest rows being updated and the running summary."""

    def __init__(
        self, model: AudioEncoder, out_dir: Path, frames: bool, batch_size: int, summary: ExtractionSummary
    ) -> None:
        self.model = model
        self.out_dir = out_dir
        self.frames = frames
        self.batch_size = batch_size
        self.summary = summary
        self.fingerprint = model_fingerprint(model)
        self.rows = _read_manifest(summary.manifest)
        self.last_manifest_write = time.monotonic()
        fe = model.config.frontend
        self.group_samples = batch_size * model.window_frames * fe.hop_length

    def split_done(self, jobs: list[_Job], overwrite: bool) -> list[_Job]:
        """Record outputs already written by this model as skipped; return the jobs still to run."""
        todo, foreign = [], []
        for job in jobs:
            row = self.rows.get(str(job.output))
            done = row is not None and row["status"] in (OK, SKIPPED) and (self.out_dir / job.output).is_file()
            if not done or overwrite:
                todo.append(job)
            elif row["model"] == self.fingerprint:
                self._record(job, SKIPPED, float(row["duration_s"] or 0), row["shape"])
            else:
                foreign.append((job.output, row["model"]))
        if foreign:
            output, other = foreign[0]
            raise ModelMismatchError(
                f"{len(foreign)} existing output(s) in '{self.out_dir}' (e.g. '{output}') were written by model "
                f"{other}, not by this model ({self.fingerprint}); pass --overwrite (overwrite=True) to replace "
                "them, or choose another output folder"
            )
        return todo

    def groups(self, jobs: list[_Job]) -> Iterator[list[_Loaded]]:
        """Loaded files, in groups of about `batch_size` windows; the next group decodes while this one runs."""
        remaining = iter(jobs)
        sample_rate = self.model.sample_rate

        def next_group() -> list[_Loaded]:
            group, samples = [], 0
            for job in remaining:
                item = _load(job, sample_rate)
                group.append(item)
                samples += 0 if item.clip is None else len(item.clip)
                if samples >= self.group_samples:
                    break
            return group

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decar-decode") as pool:
            pending = pool.submit(next_group)
            while group := pending.result():
                pending = pool.submit(next_group)
                yield group

    def run_group(self, group: list[_Loaded]) -> None:
        """Embed the decodable clips of a group in one call (one by one if that fails) and write them."""
        for item in group:
            if item.error is not None:
                self._fail(item.job, item.error)
        good = [item for item in group if item.clip is not None]
        if not good:
            return
        try:
            results = self._embed([item.clip for item in good])
        except (ValueError, RuntimeError):
            for item in good:  # isolate the clip that broke the batch
                try:
                    self._write(item, self._embed([item.clip])[0])
                except (ValueError, RuntimeError) as err:
                    self._fail(item.job, f"{type(err).__name__}: {err}")
            return
        for item, result in zip(good, results, strict=True):
            self._write(item, result)

    def _embed(self, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        if not self.frames:
            return [{"embedding": e} for e in self.model.embed(clips, batch_size=self.batch_size)]
        embeddings, timestamps = self.model.embed_frames(clips, batch_size=self.batch_size)
        return [{"embedding": e, "timestamps_ms": t} for e, t in zip(embeddings, timestamps, strict=True)]

    def _write(self, item: _Loaded, arrays: dict[str, np.ndarray]) -> None:
        target = self.out_dir / item.job.output
        if self.frames:
            atomic_write(target, lambda handle: np.savez(handle, **arrays))
        else:
            atomic_write(target, lambda handle: np.save(handle, arrays["embedding"]))
        duration = len(item.clip) / self.model.sample_rate
        self.summary.audio_seconds += duration
        self._record(item.job, OK, duration, "x".join(map(str, arrays["embedding"].shape)))

    def _fail(self, job: _Job, reason: str) -> None:
        (self.out_dir / job.output).unlink(missing_ok=True)  # a stale output would contradict the manifest
        self.summary.failed.append((job.audio, reason))
        self._record(job, FAILED, None, "", reason)

    def _record(self, job: _Job, status: str, duration: float | None, shape: str, error: str = "") -> None:
        if status == OK:
            self.summary.ok += 1
        elif status == SKIPPED:
            self.summary.skipped_existing += 1
        self.rows[str(job.output)] = {
            "input": str(job.audio),
            "output": str(job.output),
            "status": status,
            "duration_s": "" if duration is None else f"{duration:.3f}",
            "shape": shape,
            "model": self.fingerprint,
            "error": error,
        }

    def save_manifest(self, force: bool = False) -> None:
        """Rewrite the manifest if forced or if the last rewrite is older than MANIFEST_INTERVAL_S."""
        now = time.monotonic()
        if force or now - self.last_manifest_write >= MANIFEST_INTERVAL_S:
            _write_manifest(self.summary.manifest, self.rows)
            self.last_manifest_write = now


def extract_embeddings(
    inputs: list[str | Path],
    out_dir: Path,
    model: AudioEncoder,
    frames: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    overwrite: bool = False,
    table: str | None = None,
) -> ExtractionSummary:
    """Embed every audio file the inputs name into `out_dir` (layout and manifest: see the module docstring).

    Args:
        inputs: Audio files, folders (searched recursively) and text files listing audio paths.
        out_dir: Output folder (created if needed); may already hold outputs of an earlier run.
        model: The encoder, e.g. from :func:`decar.load`.
        frames: Write frame embeddings with timestamps (`.npz`) instead of clip embeddings (`.npy`).
        batch_size: Windows per forward pass; several files are embedded together to fill it.
        progress: Show a progress bar and a final summary table on stderr.
        overwrite: Recompute existing outputs, even those written by another model.
        table: also gather every clip embedding of the folder into one table, ``out_dir/embeddings.npz`` or
            ``.parquet`` (:mod:`decar.tables`), rewritten at the end of each run.

    Returns:
        Counts, audio duration, wall time and the failed files with their reasons.

    Raises:
        FileNotFoundError: An input (or a file a list names) does not exist.
        ValueError: An input holds no audio, two files map to one output, or `batch_size` < 1.
        ModelMismatchError: Outputs of another model exist and `overwrite` is False.
        OutputLocked: Another decar process is writing into `out_dir`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if table is not None and table not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {table!r}; choose from {', '.join(TABLE_FORMATS)}")
    if table is not None and frames:
        raise ValueError("a table holds one embedding per file: write frame embeddings as .npz files (no table)")
    with output_lock(out_dir, "decar embed"):
        return _extract(inputs, Path(out_dir), model, frames, batch_size, progress, overwrite, table)


def _extract(
    inputs: list[str | Path],
    out_dir: Path,
    model: AudioEncoder,
    frames: bool,
    batch_size: int,
    progress: bool,
    overwrite: bool,
    table: str | None,
) -> ExtractionSummary:
    start = time.perf_counter()
    jobs = [_Job(audio, output) for audio, output in plan_outputs(inputs, frames)]
    summary = ExtractionSummary(out_dir=out_dir, manifest=out_dir / MANIFEST_NAME)
    extractor = _Extractor(model, out_dir, frames, batch_size, summary)
    todo = extractor.split_done(jobs, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    bar = progress_bar("[bold]embedding", "speed", transient=False, disable=not progress, console=console)
    try:
        with bar:
            task = bar.add_task("embed", total=len(jobs), completed=summary.skipped_existing, speed="")
            for group in extractor.groups(todo):
                extractor.run_group(group)
                extractor.save_manifest()
                elapsed = time.perf_counter() - start
                bar.update(task, advance=len(group), speed=f"{summary.audio_seconds / elapsed:.0f}× real time")
    finally:
        extractor.save_manifest(force=True)
        summary.wall_seconds = time.perf_counter() - start
    if table is not None and summary.ok + summary.skipped_existing:
        summary.table_path = folder_table(out_dir, table)
    if progress:
        console.print(summary.table())
    return summary


__all__ = [
    "MANIFEST_COLUMNS",
    "ExtractionSummary",
    "ModelMismatchError",
    "extract_embeddings",
    "model_fingerprint",
    "plan_outputs",
]

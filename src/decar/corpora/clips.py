"""Clip specifications and their rendering to 16 kHz mono FLAC, in parallel, resumable and deterministic.

A :class:`ClipSpec` says where a clip goes and how to make it: a window of a package file, an espeak-ng
utterance or SoundFont notes. Rendering depends on the spec alone, so the same specs give byte-identical files
whatever the worker count or the order of completion. Specs are grouped into jobs that share expensive work
(one decode per source file, one SoundFont parse per batch of notes, one espeak engine per worker); a job whose
outputs all exist is skipped, which is what makes a rerun resume. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from decar._io import atomic_write_bytes
from decar.audio import AudioError, load_audio
from decar.corpora.synth import OUTPUT_RATE, Espeak, NoteClip, Utterance, render_note_clips

SILENCE_PEAK = 1e-3
"""Clips whose peak stays below this are skipped as silent (a program a SoundFont lacks, an empty utterance)."""

NOTES_PER_RENDER = 48


@dataclass(frozen=True)
class FileCut:
    """A window of a package's audio file; ``duration_s`` None reads to the end."""

    path: Path
    start_s: float = 0.0
    duration_s: float | None = None


@dataclass(frozen=True)
class ClipSpec:
    """One output clip.

    Attributes:
        relpath: where it goes, relative to the bench folder.
        recipe: how it is made.
        package: the Debian package (or engine) its audio comes from.
        source_id: the recording it comes from (see :mod:`decar.corpora.sources`).
        role: "corpus" or "task".
        task, split, label: for task clips.
        soundfont: the .sf2 file, for SoundFont recipes.
        min_s: shorter audio is padded with silence to this length.
        max_s: longer audio is cut to this length.
        peak: SoundFont and synthetic clips are scaled to this peak (0: keep the recording's level).
    """

    relpath: str
    recipe: FileCut | Utterance | NoteClip
    package: str
    source_id: str
    role: str
    task: str = ""
    split: str = ""
    label: str = ""
    soundfont: str = ""
    min_s: float = 1.0
    max_s: float = 8.0
    peak: float = 0.0


@dataclass(frozen=True)
class Written:
    """A finished clip (or why it is missing: ``error`` set, ``sha256`` empty)."""

    relpath: str
    duration_s: float
    sha256: str
    error: str = ""


def _finish(spec: ClipSpec, wave: np.ndarray, out: Path) -> Written:
    wave = np.asarray(wave, dtype=np.float32)[: round(spec.max_s * OUTPUT_RATE)]
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak < SILENCE_PEAK:
        return Written(spec.relpath, 0.0, "", "silent")
    if spec.peak:
        wave = wave * (spec.peak / peak)
    wave = np.clip(np.pad(wave, (0, max(0, round(spec.min_s * OUTPUT_RATE) - wave.size))), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, wave, OUTPUT_RATE, format="FLAC", subtype="PCM_16")
    data = buffer.getvalue()
    atomic_write_bytes(out / spec.relpath, data)
    return Written(spec.relpath, wave.size / OUTPUT_RATE, hashlib.sha256(data).hexdigest())


def existing(out: Path, spec: ClipSpec) -> Written | None:
    """The already written clip, read back for the manifest, or None."""
    path = out / spec.relpath
    if not path.is_file():
        return None
    data = path.read_bytes()
    return Written(spec.relpath, sf.info(io.BytesIO(data)).frames / OUTPUT_RATE, hashlib.sha256(data).hexdigest())


def speak_isolated(utterances: list[Utterance]) -> list[np.ndarray | None]:
    """Synthesise each utterance in its own forked child process.

    espeak-ng keeps signal state from one utterance to the next (a clip would depend on the clips rendered
    before it in the same process), and it crashes on a few odd inputs (then only that utterance is lost). The
    child leaves with os._exit, so that none of the parent's exit handlers (a process pool's queues) run twice.

    Returns one array per utterance, None for one that crashed the engine.
    """
    waves: list[np.ndarray | None] = []
    for utterance in utterances:
        receiver, sender = multiprocessing.Pipe(duplex=False)
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                receiver.close()
                sender.send(Espeak().speak(utterance))
                code = 0
            finally:
                os._exit(code)
        sender.close()
        try:
            waves.append(receiver.recv())
        except EOFError:
            waves.append(None)
        receiver.close()
        os.waitpid(pid, 0)
    return waves


def _render_job(out: Path, specs: list[ClipSpec]) -> list[Written]:
    """Render one job: specs sharing a source file, a SoundFont batch, or a run of utterances."""
    first = specs[0].recipe
    if isinstance(first, FileCut):
        try:
            whole = load_audio(first.path, OUTPUT_RATE)
        except (AudioError, ValueError) as err:
            return [Written(spec.relpath, 0.0, "", f"undecodable: {err}") for spec in specs]
        written = []
        for spec in specs:
            cut = spec.recipe
            assert isinstance(cut, FileCut)
            start = round(cut.start_s * OUTPUT_RATE)
            stop = None if cut.duration_s is None else start + round(cut.duration_s * OUTPUT_RATE)
            written.append(_finish(spec, whole[start:stop], out))
        return written
    if isinstance(first, Utterance):
        waves = speak_isolated([spec.recipe for spec in specs])  # type: ignore[misc]
        return [
            _finish(spec, wave, out) if wave is not None else Written(spec.relpath, 0.0, "", "espeak-ng crashed")
            for spec, wave in zip(specs, waves, strict=True)
        ]
    try:
        waves = render_note_clips(Path(specs[0].soundfont), [spec.recipe for spec in specs])  # type: ignore[misc]
    except (OSError, ValueError, RuntimeError) as err:
        return [Written(spec.relpath, 0.0, "", f"render failed: {err}") for spec in specs]
    return [_finish(spec, wave, out) for spec, wave in zip(specs, waves, strict=True)]


def jobs_of(specs: Iterable[ClipSpec], utterances_per_job: int = 200) -> list[list[ClipSpec]]:
    """Group specs into jobs, deterministically: by source file, by SoundFont in fixed batches, utterance runs."""
    by_file: dict[Path, list[ClipSpec]] = {}
    by_soundfont: dict[str, list[ClipSpec]] = {}
    utterances: list[ClipSpec] = []
    for spec in specs:
        if isinstance(spec.recipe, FileCut):
            by_file.setdefault(spec.recipe.path, []).append(spec)
        elif isinstance(spec.recipe, Utterance):
            utterances.append(spec)
        else:
            by_soundfont.setdefault(spec.soundfont, []).append(spec)
    jobs = [by_file[path] for path in sorted(by_file)]
    for soundfont in sorted(by_soundfont):
        group = by_soundfont[soundfont]
        jobs += [group[i : i + NOTES_PER_RENDER] for i in range(0, len(group), NOTES_PER_RENDER)]
    jobs += [utterances[i : i + utterances_per_job] for i in range(0, len(utterances), utterances_per_job)]
    return jobs


def render_all(
    out: Path,
    specs: list[ClipSpec],
    workers: int,
    advance: Callable[[int], None] = lambda _count: None,
) -> dict[str, Written]:
    """Render every spec not yet on disk; returns the outcome of each, keyed by relpath."""
    results: dict[str, Written] = {}
    pending = []
    for job in jobs_of(specs):
        done = [existing(out, spec) for spec in job]
        if all(done):
            results.update((item.relpath, item) for item in done if item)
            advance(len(job))
        else:
            pending.append(job)
    if workers <= 1:
        for job in pending:
            results.update((item.relpath, item) for item in _render_job(out, job))
            advance(len(job))
        return results
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(pool.submit(_render_job, out, job), len(job)) for job in pending]
        for future, size in futures:
            results.update((item.relpath, item) for item in future.result())
            advance(size)
    return results

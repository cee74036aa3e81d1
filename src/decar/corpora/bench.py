"""`decar data build-bench`: fetch the packages, design tasks and corpus, render, and describe the result.

Layout of a built bench::

    build.json                     seed, scale, format and design fingerprint (a rerun must match, then resumes)
    corpus/<kind>/<package>/*.flac unlabelled clips, 16 kHz mono; corpus/files.txt lists them
    tasks/<name>/...               HEAR task folders (task_metadata.json, labelvocabulary.csv, <split>.json, 16000/)
    held_out.json                  source units of every task's valid and test splits (absent from the corpus)
    manifest.csv  SOURCES.md  summary.json

A rerun with the same seed and scale skips every clip already written (clips are written atomically, so a file
that exists is complete) and rewrites the descriptions; a different seed or scale, or a changed design (another
decar version), on the same folder is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from decar._console import progress_bar
from decar._io import atomic_write_text
from decar.corpora.catalog import build_catalog
from decar.corpora.clips import ClipSpec, FileCut, render_all
from decar.corpora.corpus import DRUM_SOUNDFONTS, NOTE_SOUNDFONTS, HeldOut, corpus_clips
from decar.corpora.debian import RESERVED_PATTERNS, DebianCache, Package, is_reserved, licences
from decar.corpora.report import (
    PackageInfo,
    print_summary,
    summarise,
    write_file_list,
    write_manifest,
    write_sources,
    write_task_folder,
)
from decar.corpora.sources import PACKAGES, Recording, SourcePackage
from decar.corpora.synth import espeak_languages, espeak_variants
from decar.corpora.tasks import TASK_DESIGNS, TUXPAINT, Inputs, TaskDesign, instrument_family, voiced_digits
from decar.corpora.texts import stamp_texts

BUILD_FORMAT = 1


@dataclass(frozen=True)
class BenchPlan:
    """Which packages a bench reads, which tasks it designs, and which SoundFonts its corpus renders from."""

    name: str
    packages: tuple[str, ...]
    tasks: tuple[Callable[[Inputs], TaskDesign], ...]
    note_soundfonts: dict[str, float]
    drum_soundfonts: dict[str, float]
    real_scale: float | None = None
    """Share of the packages' recordings in the corpus (None: the build's --scale)."""

    @property
    def sources(self) -> list[SourcePackage]:
        return [source for source in PACKAGES if source.name in self.packages]


FULL_PLAN = BenchPlan("full", tuple(source.name for source in PACKAGES), TASK_DESIGNS, NOTE_SOUNDFONTS, DRUM_SOUNDFONTS)
"""The real-audio bench of BENCHMARKS.md: 28 packages (2.4 GB of downloads), seven tasks."""

DEMO_INSTRUMENTS = {
    "train": ("csound-soundfont", 2),
    "valid": ("timgm6mb-soundfont", 1),
    "test": ("timgm6mb-soundfont", 1),
}
DEMO_PLAN = BenchPlan(
    "demo",
    (
        "pocketsphinx-testdata",
        "bucklespring-data",
        "oxygen-sounds",
        "lomiri-sounds",
        "sonic-pi-samples",
        "csound-soundfont",
        "timgm6mb-soundfont",
    ),
    (functools.partial(instrument_family, soundfonts=DEMO_INSTRUMENTS), voiced_digits),
    {"csound-soundfont": 1.0},
    {"csound-soundfont": 1.0},
    real_scale=1.0,
)
"""`make demo`'s bench: seven small packages (about 56 MB) and two tasks (instrument family, held-out SoundFont;
spoken digits, held-out voices)."""

PLANS = {plan.name: plan for plan in (FULL_PLAN, DEMO_PLAN)}


class BenchError(RuntimeError):
    """The bench cannot be built as asked (an output folder built with other settings, a broken invariant)."""


@dataclass(frozen=True)
class Bench:
    """The parts of a bench design: task designs, corpus clips, held-out units, packages used."""

    designs: list[TaskDesign]
    corpus: list[ClipSpec]
    held_out: HeldOut
    packages: list[PackageInfo]
    skipped: Counter[tuple[str, str]]


def _progress(console: Console) -> Progress:
    return progress_bar(console=console, transient=False)


def _claim_output(out: Path, seed: int, scale: float, plan: BenchPlan) -> None:
    """Record this build's settings, or refuse a folder built with others."""
    settings: dict = {"format": BUILD_FORMAT, "scale": scale, "seed": seed}
    if plan is not FULL_PLAN:
        settings["plan"] = plan.name
    marker = out / "build.json"
    if marker.is_file():
        previous = json.loads(marker.read_text(encoding="utf-8"))
        previous.pop("design", None)
        if previous != settings:
            raise BenchError(
                f"{out} holds a bench built with {previous}; this build asks for {settings}. "
                "Use another --out, or the same --seed and --scale to resume it."
            )
    elif out.exists() and any(out.iterdir()):
        raise BenchError(f"{out} is not empty and holds no build.json: refusing to write a bench into it")
    atomic_write_text(marker, json.dumps(settings, sort_keys=True) + "\n")


def design_digest(specs: list[ClipSpec]) -> str:
    """A fingerprint of what every clip is (not where the cache lies), to refuse resuming a different design."""
    digest = hashlib.sha256()
    for spec in specs:
        recipe = spec.recipe
        how = (recipe.start_s, recipe.duration_s) if isinstance(recipe, FileCut) else recipe
        digest.update(repr((spec.relpath, spec.source_id, spec.split, spec.label, how, spec.peak, spec.max_s)).encode())
    return digest.hexdigest()


def _claim_design(out: Path, digest: str) -> None:
    marker = out / "build.json"
    settings = json.loads(marker.read_text(encoding="utf-8"))
    if settings.get("design", digest) != digest:
        raise BenchError(
            f"{out} was built from a different bench design (another decar version): use a new --out to rebuild"
        )
    atomic_write_text(marker, json.dumps(settings | {"design": digest}, sort_keys=True) + "\n")


def fetch_packages(cache: DebianCache, console: Console, plan: BenchPlan = FULL_PLAN) -> dict[str, Package]:
    fetched = {}
    with _progress(console) as progress:
        bar = progress.add_task("fetching Debian packages", total=len(plan.sources))
        for source in plan.sources:
            fetched[source.name] = cache.fetch(source.name)
            progress.advance(bar)
    return fetched


def design_bench(
    packages: dict[str, Package], seed: int, scale: float, console: Console, plan: BenchPlan = FULL_PLAN
) -> Bench:
    """Everything that will be written, decided before any audio is: deterministic in (seed, scale, plan)."""
    recordings: list[Recording] = []
    for source in plan.sources:
        if source.scan is not None:
            recordings += source.scan(source.name, packages[source.name].root)
    with _progress(console) as progress:
        bar = progress.add_task("reading source files", total=len(recordings))
        catalog = build_catalog(recordings, lambda count: progress.advance(bar, count))
    texts = {}
    if TUXPAINT in packages:  # descriptions in many languages, for espeak-ng to read
        texts = stamp_texts(packages[TUXPAINT].root / "usr/share/tuxpaint/stamps", set(espeak_languages()))
    soundfonts = {s.name: packages[s.name].root / s.soundfont for s in plan.sources if s.soundfont}
    inputs = Inputs(catalog, soundfonts, texts, espeak_variants(), seed, scale)
    designs = [design(inputs) for design in plan.tasks]
    held_out = HeldOut(set().union(*(design.held_out for design in designs)), catalog)
    corpus = corpus_clips(inputs, held_out, plan.note_soundfonts, plan.drum_soundfonts, plan.real_scale)
    check_disjoint(corpus, held_out, {entry.recording.source_id: entry.digest for entry in catalog.entries})
    infos = [_package_info(source, packages[source.name]) for source in plan.sources]
    return Bench(designs, corpus, held_out, infos, catalog.skipped)


def check_disjoint(corpus: list[ClipSpec], held_out: HeldOut, digests: dict[str, str]) -> None:
    """Refuse a corpus that contains a held-out source, held-out audio, or a reserved package."""
    for spec in corpus:
        if held_out.covers(spec.source_id) or digests.get(spec.source_id) in held_out.digests:
            raise BenchError(f"corpus clip {spec.relpath} comes from held-out source {spec.source_id}")
        if is_reserved(spec.package):
            raise BenchError(f"corpus clip {spec.relpath} comes from reserved package {spec.package}")


def _package_info(source: SourcePackage, package: Package) -> PackageInfo:
    return PackageInfo(source.name, package.version, tuple(licences(package.copyright_text())), source.contributes)


def _espeak_info() -> PackageInfo:
    from importlib.metadata import version

    return PackageInfo(
        "espeak-ng",
        f"espeakng-loader {version('espeakng-loader')}",
        ("GPL-3.0-or-later",),
        "synthetic speech: Tux Paint descriptions in ~55 languages, digits for spoken_digits training",
    )


def build_bench(
    out: str | Path,
    cache_dir: str | Path,
    seed: int = 0,
    scale: float = 1.0,
    workers: int = 2,
    console: Console | None = None,
    cache: DebianCache | None = None,
    plan: BenchPlan = FULL_PLAN,
) -> dict:
    """Build (or resume) a bench in ``out``; see the module docstring for what it holds.

    Args:
        out: output folder (empty, absent, or a bench built with the same seed and scale).
        cache_dir: the Debian package cache.
        seed: every random choice is a function of it.
        scale: fraction of the full size (clip counts and recordings), e.g. 0.05 for a quick build.
        workers: rendering processes.
        cache: a prepared package cache (tests); defaults to ``DebianCache(cache_dir)``.
        plan: which packages and tasks (:data:`FULL_PLAN`, or :data:`DEMO_PLAN` for `make demo`).

    Returns:
        The summary also written to summary.json.
    """
    if not 0 < scale <= 1:
        raise BenchError(f"--scale must lie in (0, 1], got {scale}")
    console = console or Console(stderr=True)
    out = Path(out).expanduser()
    _claim_output(out, seed, scale, plan)
    packages = fetch_packages(cache or DebianCache(cache_dir), console, plan)
    bench = design_bench(packages, seed, scale, console, plan)
    specs = [spec for design in bench.designs for spec in design.specs] + bench.corpus
    _claim_design(out, design_digest(specs))
    with _progress(console) as progress:
        bar = progress.add_task("rendering clips", total=len(specs))
        results = render_all(out, specs, workers, lambda count: progress.advance(bar, count))
    meta_files: list[tuple[str, str]] = []
    task_counts = {design.name: write_task_folder(out, design, results, meta_files) for design in bench.designs}
    empty = [f"{name} {split}" for name, counts in task_counts.items() for split, count in counts.items() if not count]
    if empty:
        raise BenchError(f"task split(s) without clips: {', '.join(empty)} (sources missing or undecodable?)")
    held_out_text = json.dumps(sorted(bench.held_out.units), indent=1) + "\n"
    atomic_write_text(out / "held_out.json", held_out_text)
    summary = summarise(specs, results, bench.skipped)
    summary["tasks"] = task_counts
    summary["settings"] = {"seed": seed, "scale": scale, "plan": plan.name}
    write_file_list(out, specs, results, meta_files)
    write_sources(out, [*bench.packages, _espeak_info()], summary, RESERVED_PATTERNS, meta_files)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
    write_manifest(out, specs, results, meta_files)
    print_summary(console, summary, task_counts)
    return summary

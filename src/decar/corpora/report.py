"""What a built bench says about itself: HEAR task folders, manifest, file list, SOURCES.md and a summary.

All of it is derived from the clip specs and what rendering wrote, sorted, without timestamps, so a rebuild
with the same seed writes the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from decar._io import atomic_write_text
from decar.corpora.clips import ClipSpec, Written
from decar.corpora.tasks import SPLITS, TaskDesign

MANIFEST_FIELDS = ("path", "sha256", "duration_s", "package", "source_id", "role", "task", "split", "label")


def _json(data: object) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _write(out: Path, relpath: str, text: str, written: list[tuple[str, str]]) -> None:
    atomic_write_text(out / relpath, text)
    written.append((relpath, hashlib.sha256(text.encode("utf-8")).hexdigest()))


def write_task_folder(
    out: Path, design: TaskDesign, results: dict[str, Written], meta_files: list[tuple[str, str]]
) -> dict[str, int]:
    """task_metadata.json, labelvocabulary.csv and <split>.json of a task; returns class count and clips per split.

    Only clips that were written are listed, and valid/test clips of a class absent from train are dropped. So
    are clips whose rendered audio an earlier split (train, then valid) already holds: packages ship one
    recording under several names (a voice pack's two phrases, two stamps' sounds), which a split by name
    would otherwise put in two splits.
    """
    done = [spec for spec in design.specs if not results[spec.relpath].error]
    first_split: dict[str, str] = {}
    for spec in sorted(done, key=lambda spec: SPLITS.index(spec.split)):
        first_split.setdefault(results[spec.relpath].sha256, spec.split)
    done = [spec for spec in done if first_split[results[spec.relpath].sha256] == spec.split]
    trained = {spec.label for spec in done if spec.split == "train"}
    kept = [spec for spec in done if spec.label in trained]
    vocabulary = sorted(trained)
    folder = f"tasks/{design.name}"
    counts = {}
    for split in SPLITS:
        entries = {Path(spec.relpath).name: [spec.label] for spec in kept if spec.split == split}
        _write(out, f"{folder}/{split}.json", _json(entries), meta_files)
        counts[split] = len(entries)
    vocabulary_csv = "idx,label\n" + "".join(f"{index},{label}\n" for index, label in enumerate(vocabulary))
    _write(out, f"{folder}/labelvocabulary.csv", vocabulary_csv, meta_files)
    metadata = {
        "task_name": design.name,
        "version": "decar-bench-1",
        "embedding_type": "scene",
        "prediction_type": "multiclass",
        "split_mode": "trainvaltest",
        "sample_duration": design.clip_s,
        "evaluation": ["top1_acc"],
        "label_vocab_size": len(vocabulary),
        "description": design.description,
        "split_rule": design.split_rule,
        "clips_per_split": counts,
    }
    _write(out, f"{folder}/task_metadata.json", _json(metadata), meta_files)
    return {"classes": len(vocabulary), **counts}


def write_manifest(
    out: Path, specs: list[ClipSpec], results: dict[str, Written], meta_files: list[tuple[str, str]]
) -> None:
    """manifest.csv: every written file with its sha256, duration, source package and id, role, task and split."""
    rows = [
        {
            "path": spec.relpath,
            "sha256": results[spec.relpath].sha256,
            "duration_s": f"{results[spec.relpath].duration_s:.4f}",
            "package": spec.package,
            "source_id": spec.source_id,
            "role": spec.role,
            "task": spec.task,
            "split": spec.split,
            "label": spec.label,
        }
        for spec in specs
        if not results[spec.relpath].error
    ]
    rows += [
        dict.fromkeys(MANIFEST_FIELDS, "") | {"path": path, "sha256": digest, "role": "metadata"}
        for path, digest in meta_files
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["path"]))
    atomic_write_text(out / "manifest.csv", buffer.getvalue())


def write_file_list(
    out: Path, specs: list[ClipSpec], results: dict[str, Written], meta_files: list[tuple[str, str]]
) -> None:
    """corpus/files.txt: the corpus clips, relative to corpus/, for `decar pretrain --data`."""
    names = sorted(
        spec.relpath.removeprefix("corpus/")
        for spec in specs
        if spec.role == "corpus" and not results[spec.relpath].error
    )
    _write(out, "corpus/files.txt", "".join(f"{name}\n" for name in names), meta_files)


@dataclass(frozen=True)
class PackageInfo:
    """A package as SOURCES.md describes it."""

    name: str
    version: str
    licences: tuple[str, ...]
    contributes: str


def summarise(specs: list[ClipSpec], results: dict[str, Written], skipped: Counter[tuple[str, str]]) -> dict:
    """Per package: corpus clips and hours, task clips; failed renders and skipped files by reason."""
    corpus_clips: Counter[str] = Counter()
    corpus_seconds: Counter[str] = Counter()
    task_clips: dict[str, Counter[str]] = defaultdict(Counter)
    failures: Counter[str] = Counter()
    for spec in specs:
        result = results[spec.relpath]
        if result.error:
            failures[f"{spec.package}: {result.error.split(':')[0]}"] += 1
        elif spec.role == "corpus":
            corpus_clips[spec.package] += 1
            corpus_seconds[spec.package] += result.duration_s
        else:
            task_clips[spec.package][spec.task] += 1
    return {
        "corpus": {
            package: {"clips": corpus_clips[package], "hours": round(corpus_seconds[package] / 3600, 3)}
            for package in sorted(corpus_clips)
        },
        "corpus_total": {"clips": sum(corpus_clips.values()), "hours": round(sum(corpus_seconds.values()) / 3600, 3)},
        "task_clips": {package: dict(sorted(counts.items())) for package, counts in sorted(task_clips.items())},
        "failed_clips": dict(sorted(failures.items())),
        "skipped_files": {f"{package}: {reason}": count for (package, reason), count in sorted(skipped.items())},
    }


def write_sources(
    out: Path, packages: list[PackageInfo], summary: dict, reserved: tuple[str, ...], meta_files: list[tuple[str, str]]
) -> None:
    """SOURCES.md: each package, its version and licence, what it gave to the corpus and to which tasks."""
    lines = [
        "# Sources of this bench",
        "",
        "Every clip comes from a Debian package (unpacked with `apt-get download` + `dpkg-deb -x`) or from",
        "espeak-ng (PyPI `espeakng-loader`). Licences are read from each package's `usr/share/doc/PKG/copyright`.",
        "",
        "| package | version | licence | contributes | corpus clips | corpus hours | task clips |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for package in packages:
        corpus = summary["corpus"].get(package.name, {"clips": 0, "hours": 0.0})
        tasks = ", ".join(f"{task} {count}" for task, count in summary["task_clips"].get(package.name, {}).items())
        lines.append(
            f"| {package.name} | {package.version} | {'; '.join(package.licences)} | {package.contributes} | "
            f"{corpus['clips']} | {corpus['hours']:.2f} | {tasks or '-'} |"
        )
    lines += [
        "",
        f"Corpus total: {summary['corpus_total']['clips']} clips, {summary['corpus_total']['hours']:.2f} hours.",
        "",
        "Reserved for an independent outside check, never fetched nor used: " + ", ".join(f"`{p}`" for p in reserved),
        "",
        "Skipped source files (undecodable or empty): "
        + (", ".join(f"{key} ({count})" for key, count in summary["skipped_files"].items()) or "none"),
        "",
        "Clips not written (silent renders, undecodable windows): "
        + (", ".join(f"{key} ({count})" for key, count in summary["failed_clips"].items()) or "none"),
        "",
    ]
    _write(out, "SOURCES.md", "\n".join(lines), meta_files)


def print_summary(console: Console, summary: dict, task_counts: dict[str, dict[str, int]]) -> None:
    table = Table(title="pretraining corpus")
    for column in ("source", "clips", "hours"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for package, row in summary["corpus"].items():
        table.add_row(package, str(row["clips"]), f"{row['hours']:.2f}")
    table.add_row(
        "total", str(summary["corpus_total"]["clips"]), f"{summary['corpus_total']['hours']:.2f}", style="bold"
    )
    console.print(table)
    tasks = Table(title="tasks")
    for column in ("task", "classes", *SPLITS):
        tasks.add_column(column, justify="left" if column == "task" else "right")
    for name, counts in task_counts.items():
        tasks.add_row(name, str(counts["classes"]), *(str(counts[split]) for split in SPLITS))
    console.print(tasks)

"""Ablations: each config pretrained for the same wall-clock budget on a bench corpus, then probed on every task.

``decar ablate CONFIG... --bench DIR --budget MINUTES -o OUT`` trains every config (and pretraining seed) into
``OUT/runs/<config>/seed<k>/`` with ``time_budget_minutes`` set to the budget, so each gets the same wall clock
whatever its method or cost per step; a killed ablation continues where it stopped (each run resumes from its
checkpoint, finished runs are not touched). Every run is then scored with `decar bench` (the default probe,
one shared embedding cache) against a reference, by default the first config's architecture at random init.
The report is rewritten after every run that trains, so a long ablation shows its results as it goes (the
runs still to train are listed). ``OUT/ablations.md`` / ``.json`` / ``.png`` give, per config, each task's
score and the average: the mean over pretraining seeds, their spread, the 95 % interval over test clips and the
paired-bootstrap mark of the first seed's run against the reference, and the shortcut checks of each model
(`decar.shortcuts`: how much its embeddings' clusters follow a random gain and a random cut length, the cut
clips brought back to the config's crop with its pad policy; cached in ``OUT/shortcuts.json``). With several
seeds a second table gives every run's own average and checks; ``report_only`` rewrites the report from the runs
finished so far without training.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from decar._io import atomic_write_text
from decar.config import load_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationRun:
    """One pretraining run of an ablation: its config, seed and folder."""

    config: Path
    seed: int
    folder: Path

    @property
    def name(self) -> str:
        return self.config.stem

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"


def bench_corpus(bench_dir: Path) -> Path:
    """The pretraining corpus of a bench: BENCH/corpus/files.txt (as `decar data build-bench` writes) or
    BENCH/corpus/."""
    corpus = Path(bench_dir) / "corpus"
    if (corpus / "files.txt").is_file():
        return corpus / "files.txt"
    if corpus.is_dir():
        return corpus
    raise FileNotFoundError(f"{bench_dir}: no corpus/ folder to pretrain on (build one with `decar data build-bench`)")


def plan_runs(configs: list[Path], seeds: int, out_dir: Path) -> list[AblationRun]:
    """Every (config, seed) run, in order; config names must differ (they name the run folders)."""
    if not configs:
        raise ValueError("name at least one config to ablate")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    stems = [Path(config).stem for config in configs]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise ValueError(f"configs {repeated} share a file name; it names their run folder, so rename one")
    for config in configs:
        if not Path(config).is_file():
            raise FileNotFoundError(f"ablation config not found: {config}")
    return [
        AblationRun(Path(config), seed, Path(out_dir) / "runs" / Path(config).stem / f"seed{seed}")
        for config in configs
        for seed in range(seeds)
    ]


def run_ablations(
    configs: list[Path],
    bench_dir: Path,
    budget_minutes: float,
    out_dir: Path,
    seeds: int = 1,
    overrides: list[str] | None = None,
    reference: str | None = None,
    probe_seeds: int = 3,
    cache_dir: Path | None = None,
    device: str = "cpu",
    report_only: bool = False,
) -> str:
    """Pretrain every config for ``budget_minutes`` (resumable), probe each on the bench, write the report.

    Args:
        configs: YAML configs, e.g. ``configs/ablations/*.yaml``; their file names name the rows.
        bench_dir: a bench from `decar data build-bench` (corpus/ to pretrain on, tasks/ to probe).
        budget_minutes: wall-clock minutes of pretraining per run, counted over resumes.
        out_dir: where runs/, bench/ and the ablation report go.
        seeds: pretraining seeds per config (0, 1, ...): the spread of the method, not only of the probe.
        overrides: ``key=value`` settings applied to every config (e.g. ``device=cuda``).
        reference: model spec the runs are compared with (default: ``random:`` the first config).
        probe_seeds: probe seeds of each evaluation.
        cache_dir: embedding cache (default OUT/bench/embeddings).
        device: where the evaluation runs.
        report_only: train nothing; report the runs that finished under this budget (e.g. while another
            process trains the rest, or after a session ended mid-ablation).

    Returns:
        The Markdown report (also written to OUT/ablations.md).
    """
    from decar.evaluate.bench import find_bench_tasks, run_bench
    from decar.pretrain import fit

    if not budget_minutes > 0:
        raise ValueError(f"the budget must be a positive number of minutes, got {budget_minutes}")
    runs = plan_runs(configs, seeds, out_dir)
    corpus = bench_corpus(bench_dir)
    find_bench_tasks(bench_dir)  # no task: stop before hours of pretraining
    reference = reference or f"random:{runs[0].config}"

    def report(trained: list[AblationRun]) -> str:
        """Probe the runs trained so far (finished evaluations are reused) and write the report."""
        specs = [reference, *(str(run.checkpoint) for run in trained)]
        run_bench(bench_dir, specs, Path(out_dir) / "bench", ("linear",), probe_seeds, None, cache_dir, device)
        policies = {
            reference: crop_policy(runs[0].config),
            **{str(r.checkpoint): crop_policy(r.config) for r in trained},
        }
        shortcuts = measure_shortcuts(specs, corpus, Path(out_dir) / "shortcuts.json", device, policies)
        bench_json = json.loads((Path(out_dir) / "bench" / "bench.json").read_text())
        summary = summarise(bench_json, trained, budget_minutes, shortcuts)
        summary["pending"] = [f"{run.name} seed {run.seed}" for run in runs if run not in trained]
        text = _markdown(summary)
        atomic_write_text(Path(out_dir) / "ablations.md", text)
        atomic_write_text(Path(out_dir) / "ablations.json", json.dumps(summary, indent=2) + "\n")
        _plot(summary, Path(out_dir) / "ablations.png")
        return text

    if report_only:
        finished = [run for run in runs if _finished(run, budget_minutes)]
        if not finished:
            raise FileNotFoundError(f"{out_dir}: no run has finished a {budget_minutes:g}-minute budget yet")
        return report(finished)
    for index, run in enumerate(runs):
        cfg = load_config(run.config, [*(overrides or []), f"seed={run.seed}", f"time_budget_minutes={budget_minutes}"])
        if _finished(run, budget_minutes):
            log.info("ablation %s seed %d: finished earlier, reused", run.name, run.seed)
            continue
        log.info("ablation %s seed %d: pretraining for %g min", run.name, run.seed, budget_minutes)
        fit(cfg, corpus, run.folder, resume=run.checkpoint.is_file())
        if index < len(runs) - 1:  # a report after every trained run: hours of ablations show results as they go
            report(runs[: index + 1])
    return report(runs)


def _finished(run: AblationRun, budget_minutes: float) -> bool:
    """A run whose summary was written under this very budget needs no more training."""
    summary, config = run.folder / "summary.json", run.folder / "config.yaml"
    if not summary.is_file() or not config.is_file():
        return False
    saved = yaml.safe_load(config.read_text()) or {}
    return saved.get("time_budget_minutes") == budget_minutes


def crop_policy(config: Path) -> tuple[float, str]:
    """(crop seconds, pad mode) of a config: how its pretraining brings a short clip to the crop."""
    cfg = load_config(config)
    return cfg.data.crop_seconds, cfg.data.pad_mode


def measure_shortcuts(
    specs: list[str],
    corpus: Path,
    cache: Path,
    device: str = "cpu",
    policies: dict[str, tuple[float, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The shortcut checks of every model spec on clips of the pretraining corpus, each with its crop policy
    from ``policies`` (default: 0.96 s, tiled); a model measured before (same spec, fingerprint and policy) is
    read from ``cache``, and the corpus is read only when one is new."""
    from decar.evaluate.models import load_eval_model
    from decar.shortcuts import check_shortcuts, clip_seconds, corpus_clips

    saved = json.loads(cache.read_text()) if cache.is_file() else {}
    results: dict[str, dict[str, Any]] = {}
    clips_by_seconds: dict[float, Any] = {}
    for spec in specs:
        crop, pad_mode = (policies or {}).get(spec, (0.96, "tile"))
        model = load_eval_model(spec, device)
        fingerprint = model.fingerprint  # before `prepare` fits any statistics on the clips
        known = saved.get(spec, {})
        if (known.get("fingerprint"), known.get("crop_seconds"), known.get("pad_mode")) == (
            fingerprint,
            crop,
            pad_mode,
        ):
            results[spec] = known
            continue
        seconds = clip_seconds(crop)
        if seconds not in clips_by_seconds:
            try:
                clips_by_seconds[seconds] = corpus_clips(corpus, seconds=seconds, sample_rate=model.sample_rate)
            except ValueError as err:  # e.g. crops of 10 s on a corpus of short clips: a gap in the table
                log.warning("no shortcut checks of %s: %s", spec, err)
                clips_by_seconds[seconds] = None
        clips = clips_by_seconds[seconds]
        if clips is None:
            results[spec] = {}
            continue
        log.info("shortcut checks of %s on %d corpus clips", spec, len(clips.waveforms))
        model.prepare(clips.waveforms)  # statistics of the clips as they are, before the interventions
        results[spec] = {"fingerprint": fingerprint, **check_shortcuts(model.embed, clips, crop, pad_mode)}
        saved[spec] = results[spec]
        atomic_write_text(cache, json.dumps(saved, indent=2) + "\n")
    return results


def summarise(
    bench: dict[str, Any],
    runs: list[AblationRun],
    budget_minutes: float,
    shortcuts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per config: each task's and the average's mean over pretraining seeds, their std, the first seed's 95 %
    interval over test clips and its paired mark against the reference (the bench's first model), and what
    each run did with the budget, with its gain-shortcut AMI when ``shortcuts`` (by model spec) holds it."""
    shortcuts = shortcuts or {}
    rows = bench["protocols"]["linear"]
    by_spec = {row["spec"]: row for row in rows}
    reference = rows[0]
    tasks = list(reference["tasks"])
    configs: dict[str, dict[str, Any]] = {}
    for run in runs:
        entry = by_spec[str(run.checkpoint)]
        group = configs.setdefault(run.name, {"config": str(run.config), "seeds": [], "runs": [], "training": []})
        group["seeds"].append(run.seed)
        group["runs"].append(entry)
        # what each run did with the budget: a machine slower on one day shows here
        summary = json.loads((run.folder / "summary.json").read_text())
        keys = ("global_step", "epochs", "clips_per_s", "final_loss", "ami_level")
        training = {"seed": run.seed, **{key: summary.get(key) for key in keys}}
        own = entry["average"]
        training["average"] = {"mean": own["mean"], "ci95": own["ci95"], "mark": own["mark"]}
        checks = shortcuts.get(str(run.checkpoint), {})
        training["ami_gain"], training["ami_cut"] = checks.get("ami_gain"), checks.get("ami_cut")
        group["training"].append(training)
    table = {}
    for name, group in configs.items():
        first = group["runs"][0]
        cells = {}
        for task in [*tasks, "average"]:
            values = [(run["average"] if task == "average" else run["tasks"][task])["mean"] for run in group["runs"]]
            own = first["average"] if task == "average" else first["tasks"][task]
            cells[task] = {
                "mean": float(np.mean(values)),
                "std_over_seeds": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                "ci95": own["ci95"],
                "mark": own["mark"],
            }
        table[name] = {
            "config": group["config"],
            "seeds": group["seeds"],
            "scores": cells,
            "training": group["training"],
        }
    return {
        "budget_minutes": budget_minutes,
        "reference": {
            "spec": reference["spec"],
            "scores": {**reference["tasks"], "average": reference["average"]},
            "ami_gain": shortcuts.get(reference["spec"], {}).get("ami_gain"),
            "ami_cut": shortcuts.get(reference["spec"], {}).get("ami_cut"),
        },
        "tasks": tasks,
        "configs": table,
    }


def _cell(cell: dict[str, Any]) -> str:
    text = f"{cell['mean']:.3f}"
    if cell.get("std_over_seeds") is not None:
        text += f" ± {cell['std_over_seeds']:.3f}"
    text += f" [{cell['ci95'][0]:.3f}, {cell['ci95'][1]:.3f}]"
    return text + (f" {cell['mark']}" if cell.get("mark") else "")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _rate(training: dict[str, Any]) -> str:
    return f"{training['clips_per_s']:.0f}" if training.get("clips_per_s") else "–"


def _markdown(summary: dict[str, Any]) -> str:
    tasks = [*summary["tasks"], "average"]
    lines = [
        f"# Ablations: {summary['budget_minutes']:g} minutes of pretraining each, default probe",
        "",
        "mean over pretraining seeds ± their std (when several) [95 % interval over test clips, first seed]; "
        f"▲/▼: the first seed's run better/worse than the reference ({summary['reference']['spec']}) in a "
        "paired bootstrap. steps and clips/s: what the first seed's run did within the budget (clips/s over the "
        "last epoch, clustering included); equal budgets are comparable only where the machine ran at one speed. "
        "gain AMI: how much the k-means clusters of the first seed's embeddings follow a random gain of ±12 dB "
        "put on corpus clips independently of their content (0: blind to loudness; the level shortcut). "
        "cut AMI: the same with each clip cut to a random length of 0.1 s to the crop and brought back to the "
        "crop as the config's pretraining does (tiled or padded with silence; the duration shortcut; cutting "
        "also removes content, so compare with the reference).",
        "",
        "| config | seeds | steps | clips/s | gain AMI | cut AMI | " + " | ".join(tasks) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(tasks),
        f"| reference | – | – | – | {_number(summary['reference'].get('ami_gain'))} | "
        f"{_number(summary['reference'].get('ami_cut'))} | "
        + " | ".join(f"{summary['reference']['scores'][t]['mean']:.3f}" for t in tasks)
        + " |",
    ]
    ranked = sorted(summary["configs"].items(), key=lambda item: -item[1]["scores"]["average"]["mean"])
    for name, row in ranked:
        cells = " | ".join(_cell(row["scores"][task]) for task in tasks)
        first = row["training"][0]
        steps, gain, cut = first.get("global_step", "–"), _number(first.get("ami_gain")), _number(first.get("ami_cut"))
        lines.append(f"| {name} | {len(row['seeds'])} | {steps} | {_rate(first)} | {gain} | {cut} | {cells} |")
    if any(len(row["training"]) > 1 for row in summary["configs"].values()):
        lines += [
            "",
            "Every run (average: the run's own bench average, its 95 % interval and mark):",
            "",
            "| config | seed | steps | clips/s | last loss | gain AMI | cut AMI | average |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in ranked:
            for run in row["training"]:
                lines.append(
                    f"| {name} | {run['seed']} | {run.get('global_step', '–')} | {_rate(run)} | "
                    f"{_number(run.get('final_loss'))} | {_number(run.get('ami_gain'))} | "
                    f"{_number(run.get('ami_cut'))} | {_cell(run['average'])} |"
                )
    if summary.get("pending"):
        lines += ["", f"Still to train: {', '.join(summary['pending'])}."]
    return "\n".join(lines) + "\n"


def _plot(summary: dict[str, Any], path: Path) -> None:
    """Average score per config (error bar: std over seeds, else the 95 % interval; a dot per seed's run),
    reference as a line."""
    from decar.plots import plt, save_png  # decar.plots selects the Agg backend first

    ranked = sorted(summary["configs"].items(), key=lambda item: item[1]["scores"]["average"]["mean"])
    names = [name for name, _ in ranked]
    averages = [row["scores"]["average"] for _, row in ranked]
    means = np.array([cell["mean"] for cell in averages])
    low = np.array([cell["mean"] - (cell["std_over_seeds"] or cell["mean"] - cell["ci95"][0]) for cell in averages])
    high = np.array([cell["mean"] + (cell["std_over_seeds"] or cell["ci95"][1] - cell["mean"]) for cell in averages])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    ax.barh(names, means, xerr=[means - low, high - means], color="tab:blue", alpha=0.8)
    reference = summary["reference"]["scores"]["average"]["mean"]
    ax.axvline(reference, color="grey", linestyle=":", label="reference")
    seed_means = [[run["average"]["mean"] for run in row["training"] if run.get("average")] for _, row in ranked]
    several = [(row, points) for row, points in enumerate(seed_means) if len(points) > 1]
    for row, points in several:
        ax.plot(points, [row] * len(points), "o", color="black", markersize=4)
    if several:
        ax.plot([], [], "o", color="black", markersize=4, label="one seed's run")
    for row, mean in enumerate(means):
        ax.annotate(f"{mean:.3f}", (mean, row), xytext=(4, 6), textcoords="offset points", fontsize=8)
    lowest = min([low.min(), reference, *(min(points) for _, points in several)])
    highest = max([high.max(), *(max(points) for _, points in several)])
    # the differences are a few points: an axis from 0 would hide them
    ax.set_xlim(max(0.0, lowest - 0.05), min(1.0, highest + 0.03))
    whiskers = "std over seeds, else 95 % interval" if several else "95 % interval"
    ax.set(
        xlabel=f"bench average (default probe); whiskers: {whiskers}",
        title=f"ablations, {summary['budget_minutes']:g} min each",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save_png(fig, path)

"""The `decar` command: a thin typer layer over the library."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

import decar
from decar._console import print_table
from decar.evaluate import PRETRAINED

app = typer.Typer(
    name="decar",
    help="DECAR: learn general-purpose audio representations by deep clustering, and use them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect configurations.", no_args_is_help=True)
app.add_typer(config_app, name="config")
data_app = typer.Typer(help="Build benchmark data from free audio sources.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

USER_ERRORS = (FileNotFoundError, ValueError, RuntimeError)
"""What a user's input can cause; decar's own errors (ConfigError, CheckpointError, AudioError, TaskError,
PretrainError, OutputLocked) derive from ValueError or RuntimeError. Commands import the library when they run,
so `decar --help` does not wait for torch."""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )


def _fail(err: Exception) -> None:
    """Print `error: <message>` to stderr verbatim and exit with status 2.

    Plain `typer.echo`, not rich: no markup is interpreted (`decar[faiss]` and a path like `/x/[a]/b.wav` stay
    intact) and no line is wrapped at the terminal width. Only the `error:` prefix is styled, and click drops
    the styling when stderr is not a terminal.
    """
    typer.echo(f"{typer.style('error:', fg='red', bold=True)} {err}", err=True)
    raise typer.Exit(code=2)


def _print_version(requested: bool) -> None:
    """Eager: runs while the options are parsed, before click asks for a command."""
    if requested:
        typer.echo(decar.__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the decar version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """decar: general-purpose audio representations by deep clustering."""


@app.command()
def pretrain(
    data: Annotated[Path, typer.Option(help="Folder of audio (searched recursively) or a text file listing files.")],
    out: Annotated[Path, typer.Option(help="Run folder: config.yaml, log.jsonl, curves.png, checkpoint.pt.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML config, e.g. configs/decar.yaml (paper) or configs/tiny.yaml.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Config overrides as key=value, e.g. optim.epochs=50 objective.num_clusters=256."),
    ] = None,
) -> None:
    """Pretrain DECAR on unlabeled audio. Runs the same under `torchrun --nproc_per_node N -m decar.cli`.

    Bad audio files are skipped with a warning and counted; a killed run continues with --resume.
    Every config key can be overridden; `decar config default` lists them with the paper's values.
    """
    from decar.config import load_config
    from decar.pretrain import fit

    _setup_logging(verbose)
    try:
        cfg = load_config(config, overrides or [])
        summary = fit(cfg, data, out, resume=resume)
    except USER_ERRORS as err:
        _fail(err)
    if summary["world_size"] == 1 or _is_rank_zero():
        _print_summary("pretraining summary", summary)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the audio, the run and the results.")] = Path("demo_run"),
    minutes: Annotated[float, typer.Option(help="Wall-clock minutes of pretraining.")] = 3.0,
    seeds: Annotated[int, typer.Option(help="Probe seeds.")] = 3,
    cache: Annotated[Path, typer.Option(help="Debian package cache.")] = Path("~/.cache/decar/debian"),
    generated: Annotated[bool, typer.Option(help="Use generated audio, not Debian packages.")] = False,
) -> None:
    """The whole chain in minutes on a CPU: real audio, pretraining, evaluation, a comparison table.

    Builds a small bench from seven free Debian packages (generated audio where they cannot be fetched, saying
    why), pretrains configs/tiny_v2.yaml on its corpus, then scores it on the bench's tasks against the same
    architecture at random init and log-mel statistics. Rerunning reuses what is finished.
    """
    from decar.demo import run_demo

    _setup_logging(False)
    try:
        text, audio = run_demo(out, minutes, seeds, cache, generated)
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(text)
    run, results = out / f"run_{audio.kind}", out / f"results_{audio.kind}"
    typer.echo(
        f"audio: {audio.description} ({audio.bench}); report: {results / 'bench.md'} and bench.png; "
        f"training curves: {run / 'curves.png'}; checkpoint: {run / 'checkpoint.pt'}"
    )


@app.command()
def embed(
    inputs: Annotated[
        list[Path], typer.Argument(help="Audio files, folders (searched recursively) and text files listing audio.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: one .npy/.npz per file + manifest.csv.")],
    model: Annotated[
        Path | None, typer.Option(help="Checkpoint (checkpoint.pt or encoder.safetensors); default: bundled model.")
    ] = None,
    frames: Annotated[
        bool, typer.Option(help="Frame embeddings with timestamps (.npz) instead of clip embeddings (.npy).")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass (several files share one).")] = 8,
    overwrite: Annotated[bool, typer.Option(help="Recompute existing outputs, even another model's.")] = False,
    device: Annotated[str, typer.Option(help="Where the model runs: cpu, cuda, cuda:1, mps.")] = "cpu",
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16 autocast (faster on GPUs and CPUs with bf16 units; cosine > 0.99).")
    ] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="Channels-last convolutions (faster on CPU).")] = True,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="npy: one file per input only; npz or parquet: also one table OUT/embeddings.<format> of "
            "(file, embedding) for the whole folder (clip embeddings; parquet needs pyarrow).",
        ),
    ] = "npy",
) -> None:
    """Embed audio files to one output each, listed in OUT/manifest.csv.

    Outputs mirror each file's path inside its folder (or its list file's folder): DIR/a/b.wav -> OUT/a/b.wav.npy.
    Resumable: rerun the same command and files already embedded by the same model are skipped.
    Bad files are listed with their reason in the manifest and the summary; they never stop the run.
    Exit status: 0 when every file was embedded, 1 when some failed (the others are written), 2 on an error
    that stopped the run.
    """
    from decar.embed import NoBundledModelError
    from decar.extract import extract_embeddings
    from decar.tables import TABLE_FORMATS

    try:
        if output_format != "npy" and output_format not in TABLE_FORMATS:
            raise ValueError(f"--format {output_format!r}: choose npy, {' or '.join(TABLE_FORMATS)}")
        encoder = decar.load(model, device=device, precision=precision, channels_last=channels_last)
        summary = extract_embeddings(
            inputs,
            out,
            encoder,
            frames=frames,
            batch_size=batch_size,
            overwrite=overwrite,
            table=None if output_format == "npy" else output_format,
        )
    except NoBundledModelError:
        _fail(
            RuntimeError(
                "no --model given and this decar release bundles no pretrained model; "
                "pass --model PATH (a checkpoint.pt or encoder.safetensors from `decar pretrain`)"
            )
        )
    except USER_ERRORS as err:
        _fail(err)
    if summary.failed:
        raise typer.Exit(code=1)


@app.command("export-onnx")
def export_onnx(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (checkpoint.pt or encoder.safetensors).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.")],
    opset: Annotated[int | None, typer.Option(help="ONNX opset version (default 17; 18 with --frontend).")] = None,
    frontend: Annotated[
        bool, typer.Option(help="Take raw waveforms at the model's rate instead of normalised log-mel.")
    ] = False,
) -> None:
    """Export a checkpoint's encoder to ONNX (needs decar's onnx extra).

    The graph takes the normalised log-mel (batch, 1, frames, mels); its metadata holds the frontend settings and
    normalisation statistics. With --frontend it takes raw waveforms (batch, samples) and computes the log-mel.
    """
    try:
        from decar.integrations.onnx import export_onnx as export
    except ImportError as err:
        _fail(RuntimeError(f"ONNX export is unavailable ({err}); install it with: pip install 'decar[onnx]'"))
    try:
        path = export(checkpoint, output, opset=opset, include_frontend=frontend)
    except (*USER_ERRORS, ImportError) as err:
        _fail(err)
    typer.echo(f"wrote {path}")


@app.command("export-model")
def export_model(
    checkpoint: Annotated[Path, typer.Argument(help="A training checkpoint (RUN/checkpoint.pt).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="safetensors file to write.")],
    half: Annotated[
        bool, typer.Option(help="Store the weights as float16 when that moves the embeddings by at most 1 %.")
    ] = True,
) -> None:
    """Export a run's encoder as a model to ship: safetensors with the config, normalisation statistics, the
    training log and the commands that made it in its metadata; loads with decar.load(PATH), and without any
    argument when written to src/decar/pretrained/decar.safetensors."""
    from decar.checkpoint import export_release

    try:
        written = export_release(checkpoint, output, half=half)
    except USER_ERRORS as err:
        _fail(err)
    size = written["bytes"] / 2**20
    typer.echo(
        f"wrote {output}: {size:.1f} MiB of {written['dtype']}, {written['weights']:,} weights, "
        f"{written['epochs']} epochs of log"
    )
    if half and written["dtype"] == "float32":
        typer.echo(
            f"kept float32: float16 weights changed the embeddings by {written['half_change']:.1%} of their RMS "
            "(more than 1 %)"
        )


MODEL_SPEC_HELP = (
    "Model: pretrained (the model bundled with decar; `decar evaluate`'s default); a decar checkpoint "
    "(checkpoint.pt or encoder.safetensors); random:CKPT (same architecture, untrained weights; random:pretrained "
    "too); logmel-stats (mean+std of log-mel frames, a baseline); byola:FILE.pth (BYOL-A AudioNTT2020 weights); "
    "hear:MODULE[:FILE] (any HEAR API module)."
)


def _task_spec_help() -> str:
    from decar.evaluate.tasks import list_tasks

    return (
        "Task (repeat for several): NAME:ROOT for a built-in corpus in its standard layout "
        f"(NAME one of {', '.join(list_tasks())}); "
        "a HEAR task folder (with task_metadata.json); or a manifest .csv/.jsonl (path,label,split|fold)."
    )


@app.command("evaluate")
def evaluate_command(
    task: Annotated[list[str], typer.Option("--task", "-t", help=_task_spec_help())],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Results folder: results.json, results.md, confusion_*.png.")
    ],
    protocol: Annotated[
        str,
        typer.Option(
            help="Probes on frozen embeddings, selected on validation: linear (L2 logistic regression, L-BFGS, "
            "strength chosen on validation), evar-linear (EVAR's Adam linear layer, early stopping), hear-mlp "
            "(HEAR's MLP grid), knn (cosine k-NN, k chosen on validation); finetune (decar checkpoints: encoder "
            "and head trained, selected on validation); paper (the DECAR code's best-test-epoch protocol, "
            "reported as test-selected)."
        ),
    ] = "linear",
    seeds: Annotated[int, typer.Option(help="Probe seeds; results are mean ± std over them.")] = 3,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Embedding cache folder, reused across runs and protocols.")
    ] = None,
    device: Annotated[str, typer.Option(help="Where the model runs (and is fine-tuned): cpu, cuda, mps.")] = "cpu",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_SPEC_HELP)] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            help="Probe embeddings computed before instead of a model: a `decar embed` folder or an .npz/.parquet "
            "table of (file, embedding), e.g. from another toolkit. Same as --model embeddings:PATH."
        ),
    ] = None,
) -> None:
    """Evaluate a model on downstream tasks: embed once, fit a probe per seed, report mean ± std and a 95 % CI.

    Model selection uses each task's validation split (k-fold: the next fold). The 95 % CI is a bootstrap over
    test clips; per-clip predictions go to OUT/predictions/ for paired comparisons. Clips that fail to decode are
    listed in the results and left out; they never stop the run. Compare runs with `decar compare`.
    Exit status: 0 when every clip was used, 1 when some were left out (the scores are written), 2 on an error
    that stopped the run.
    """
    from decar.evaluate.runner import evaluate

    _setup_logging(verbose)
    if model is not None and embeddings is not None:
        _fail(ValueError("give a model (--model) or precomputed embeddings (--embeddings), not both"))
    spec = f"embeddings:{embeddings}" if embeddings is not None else model or PRETRAINED
    try:
        results = evaluate(spec, task, out, protocol=protocol, seeds=seeds, cache_dir=cache_dir, device=device)
    except USER_ERRORS as err:  # TaskError is a ValueError
        _fail(err)
    left_out = sum(len(entry.get("failures", [])) for entry in results["tasks"].values())
    if left_out:
        typer.echo(f"{left_out} clip(s) could not be used and were left out: see {out / 'results.json'}", err=True)
        raise typer.Exit(code=1)


@app.command("compare")
def compare_command(
    results: Annotated[list[Path], typer.Argument(help="Results folders of `decar evaluate` (each has results.json).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write compare.md and compare.png (grouped bars) here.")
    ] = None,
    allow_mixed_protocols: Annotated[
        bool,
        typer.Option(
            "--allow-mixed-protocols",
            help="Compare runs of different protocols (or of unknown settings, from older decar) anyway.",
        ),
    ] = False,
) -> None:
    """Side-by-side table of evaluated models × tasks (mean ± std over seeds, plus an Average column).

    Runs must share one protocol and its settings. Scores marked * differ from the first folder's at 95 %
    (paired bootstrap over the test clips both runs scored).
    """
    from decar.evaluate.report import compare

    try:
        text = compare(results, out, allow_mixed_protocols=allow_mixed_protocols)
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(text)


@app.command("bench")
def bench_command(
    bench: Annotated[Path, typer.Option(help="A bench from `decar data build-bench` (or a folder of HEAR tasks).")],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help=MODEL_SPEC_HELP + " Repeat; the first is the reference.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results: bench.md, bench.json, bench.png, one run each.")],
    protocol: Annotated[
        list[str] | None,
        typer.Option(help="Probe protocol(s) on frozen embeddings; the first makes the table. Default: linear."),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Probe seeds per run.")] = 3,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Only these bench tasks (by name).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache (default: OUT/embeddings).")] = None,
    device: Annotated[str, typer.Option(help="Where the models run: cpu, cuda, mps.")] = "cpu",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Score several models on every bench task: a table (score, 95 % interval, paired marks) and a chart.

    Each model × protocol is one `decar evaluate` run in OUT/<protocol>/<model>/; rerunning skips finished runs,
    and all runs share one embedding cache, so a second protocol costs only its probes.
    """
    from decar.evaluate.bench import run_bench

    _setup_logging(verbose)
    try:
        text = run_bench(bench, model, out, tuple(protocol or ["linear"]), seeds, task, cache_dir, device)
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(text)
    typer.echo(f"wrote {out / 'bench.md'}, {out / 'bench.json'} and {out / 'bench.png'}")


@app.command("shortcuts")
def shortcuts_command(
    data: Annotated[Path, typer.Option(help="Audio to measure on: a folder or a list file, e.g. a bench corpus.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help=MODEL_SPEC_HELP + " Repeat for several.")],
    clips: Annotated[int, typer.Option(help="Clips drawn from the corpus (centre windows of 1 s or the crop).")] = 1500,
    max_db: Annotated[float, typer.Option(help="Random gains are uniform in ±max_db.")] = 12.0,
    crop_seconds: Annotated[float, typer.Option(help="Crop the cut clips are brought back to.")] = 0.96,
    pad_mode: Annotated[str, typer.Option(help="How a cut clip is brought back: tile or silence.")] = "tile",
    seed: Annotated[int, typer.Option(help="Seed of the clips' draw, the gains, the cuts and the k-means.")] = 0,
    device: Annotated[str, typer.Option(help="Where the models run: cpu, cuda, mps.")] = "cpu",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Does a model cluster on loudness or on duration? Embed corpus clips at random gains, and cut to random
    lengths then brought back to the crop (tiled or padded with silence), both independent of their content, and
    print the AMI between the embeddings' k-means clusters and the gain or the cut length (0: blind to it) and
    the clips' source folder (the content they carry, for scale)."""
    from decar.data import PAD_MODES
    from decar.evaluate.models import load_eval_model
    from decar.shortcuts import check_shortcuts, clip_seconds, corpus_clips

    _setup_logging(verbose)
    title = f"shortcuts: gains of ±{max_db:g} dB; cuts of 0.1-{crop_seconds:g} s, {pad_mode}"
    table = Table(title=title)
    for column in ("model", "gain AMI", "cut AMI", "source AMI", "clips"):
        table.add_column(column, no_wrap=True)
    try:
        if pad_mode not in PAD_MODES:  # before any model loads or clip decodes
            raise ValueError(f"--pad-mode must be tile or silence, got {pad_mode!r}")
        probe = None
        for spec in model:
            eval_model = load_eval_model(spec, device)
            probe = probe or corpus_clips(data, clips, clip_seconds(crop_seconds), eval_model.sample_rate, seed)
            eval_model.prepare(probe.waveforms)  # models that fit statistics fit them before the interventions
            result = check_shortcuts(eval_model.embed, probe, crop_seconds, pad_mode, seed, max_db)
            cells = (f"{result[key]:.3f}" for key in ("ami_gain", "ami_cut", "ami_source"))
            table.add_row(Text(spec), *cells, str(result["clips"]))
    except USER_ERRORS as err:
        _fail(err)
    print_table(table)


@app.command("ablate")
def ablate_command(
    configs: Annotated[list[Path], typer.Argument(help="Configs to compare, e.g. configs/ablations/*.yaml.")],
    bench: Annotated[Path, typer.Option(help="A bench from `decar data build-bench`: corpus/ and tasks/.")],
    budget: Annotated[float, typer.Option(help="Minutes of pretraining per run (wall clock, over resumes).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="runs/, bench/, ablations.md/.json/.png.")],
    seeds: Annotated[int, typer.Option(help="Pretraining seeds per config (use >= 3 for the leading ones).")] = 1,
    reference: Annotated[
        str | None, typer.Option(help="Model the runs are compared with; default: random:<first config>.")
    ] = None,
    probe_seeds: Annotated[int, typer.Option(help="Probe seeds of each evaluation.")] = 3,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache (default: OUT/bench/embeddings).")] = None,
    device: Annotated[str, typer.Option(help="Where the evaluation runs (pretraining: the device= override).")] = "cpu",
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="key=value for every config, e.g. --set device=cuda.")
    ] = None,
    report_only: Annotated[
        bool, typer.Option(help="Train nothing: write the table from the runs finished under this budget.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Pretrain each config for the same wall-clock budget on the bench corpus, probe each on every bench task.

    Resumable: run the same command again after an interruption; finished runs and evaluations are reused.
    Writes OUT/ablations.md (configs ranked by their bench average; with several seeds, every run's row too),
    ablations.json and ablations.png.
    """
    from decar.ablate import run_ablations

    _setup_logging(verbose)
    try:
        text = run_ablations(
            configs, bench, budget, out, seeds, overrides or [], reference, probe_seeds, cache_dir, device, report_only
        )
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(text)
    typer.echo(f"wrote {out / 'ablations.md'}, {out / 'ablations.json'} and {out / 'ablations.png'}")


@config_app.command("default")
def config_default() -> None:
    """Print the default config (the paper's DECAR v1 settings) as YAML."""
    from decar.config import DecarConfig

    typer.echo(yaml.safe_dump(DecarConfig().to_dict(), sort_keys=False))


@config_app.command("show")
def config_show(
    path: Annotated[Path, typer.Argument(help="A YAML config or a checkpoint file.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides to apply.")] = None,
) -> None:
    """Print a config resolved with defaults and overrides (or the config stored in a checkpoint)."""
    from decar.config import load_config

    try:
        if path.suffix in (".pt", ".safetensors"):
            from decar.checkpoint import load_checkpoint

            data = load_checkpoint(path)["config"]
        else:
            data = load_config(path, overrides or []).to_dict()
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(yaml.safe_dump(data, sort_keys=False))


@data_app.command("build-bench")
def build_bench_command(
    out: Annotated[Path, typer.Option(help="Bench folder: corpus/, tasks/, manifest.csv, SOURCES.md.")],
    cache: Annotated[Path, typer.Option(help="Debian package cache.")] = Path("~/.cache/decar/debian"),
    seed: Annotated[int, typer.Option(help="Every random choice of the build derives from it.")] = 0,
    scale: Annotated[float, typer.Option(help="Fraction of the full size, e.g. 0.05 for a quick build.")] = 1.0,
    workers: Annotated[int, typer.Option(help="Rendering processes.")] = 2,
    plan: Annotated[
        str, typer.Option(help="full: 28 packages, seven tasks; demo: seven small packages, two tasks.")
    ] = "full",
) -> None:
    """Fetch free Debian audio packages and build a pretraining corpus and labelled HEAR tasks from them.

    Deterministic in --seed. Rerunning on the same --out with the same --seed and --scale resumes: finished clips
    are kept. Reserved packages (kept for an outside check) are never fetched.
    """
    from decar.corpora.bench import PLANS, BenchError, build_bench
    from decar.corpora.debian import PackageUnavailableError, ReservedPackageError

    if plan not in PLANS:
        _fail(ValueError(f"unknown --plan {plan!r}; choose from {', '.join(PLANS)}"))

    missing = [name for name in ("espeakng_loader", "midirenderer", "mido") if importlib.util.find_spec(name) is None]
    if missing:
        _fail(RuntimeError(f"build-bench needs {', '.join(missing)}; install them with: pip install 'decar[bench]'"))
    try:
        build_bench(out, cache, seed=seed, scale=scale, workers=workers, console=console, plan=PLANS[plan])
    except (BenchError, PackageUnavailableError, ReservedPackageError) as err:
        _fail(err)


@data_app.command("shard")
def shard_command(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files, folders (recursive) and list files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Shard folder: shard-*.tar, shard-*.json, index.json.")],
    shard_size: Annotated[int, typer.Option(help="Input files per shard.")] = 1000,
    sample_rate: Annotated[int, typer.Option(help="Rate of the clips in the shards.")] = 16000,
    encoding: Annotated[
        str, typer.Option(help="flac (compact) or pcm16 (16-bit .npy: about 1.7x larger, read without decoding).")
    ] = "flac",
) -> None:
    """Write audio as tar shards (WebDataset layout: <id>.flac + <id>.json) with an index; bad files are skipped
    and named. Rerunning resumes: shards already written are kept."""
    from decar.shards import ShardError, write_shards

    try:
        index = write_shards(inputs, out, shard_size, sample_rate, console, encoding)
    except (ShardError, *USER_ERRORS) as err:
        _fail(err)
    typer.echo(
        f"{index['total_samples']} clips ({index['total_seconds'] / 3600:.2f} h) in {len(index['shards'])} shards, "
        f"{len(index['skipped'])} files skipped; wrote {out / 'index.json'}"
    )


@data_app.command("audioset")
def audioset_command(
    root: Annotated[Path, typer.Argument(help="AudioSet: the release's CSVs and a folder of downloaded clips.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="List file to write, for `decar pretrain --data`.")],
    subset: Annotated[
        list[str] | None,
        typer.Option(help="balanced_train, unbalanced_train and/or eval (repeat); default: balanced_train."),
    ] = None,
) -> None:
    """List the AudioSet clips found on disk for pretraining; segments never downloaded are counted.

    For evaluation, the 527-class task is `decar evaluate --task audioset:ROOT` (train and valid from
    balanced_train, test from eval; mAP and d′).
    """
    from decar.corpora.audioset import AudioSetError, write_pretraining_list

    subsets = tuple(subset or ["balanced_train"])
    try:
        found = write_pretraining_list(root, out, subsets)
    except (AudioSetError, OSError) as err:
        _fail(err)
    for name in subsets:
        typer.echo(f"{name}: {len(found.clips[name])} clips on disk, {found.missing[name]} segments without a file")
    typer.echo(f"wrote {out}")


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _print_summary(title: str, summary: dict[str, Any]) -> None:
    """Print `summary` as a two-column table on stdout, never wrapping or truncating a key or a value.

    A narrow terminal gets lines wider than itself (the terminal folds them) rather than cut paths and numbers.
    """
    table = Table(title=title, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    for key, value in summary.items():
        if key == "skipped":
            continue
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        table.add_row(Text(key), Text(text))  # Text: brackets in paths are not rich markup
    for path, reason in summary.get("skipped", {}).items():
        table.add_row(Text("skipped file"), Text(f"{path}: {reason}"))
    print_table(table)


if __name__ == "__main__":
    sys.exit(app())

"""`decar demo`: the whole chain in a few minutes on a CPU: audio → pretraining → evaluation → comparison table.

1. Audio: a generated corpus of eight sound families (tones, chords, noises, chirps, clicks; each clip with its
   own pitch, level and noise) and two labelled tasks in the HEAR layout, generated likewise: which family a
   clip is (8 classes) and which way its pitch moves (rising, falling or steady), in loud white noise so that
   the models differ. Generated, not real audio,
   so that the demo needs no download; `decar data build-bench` builds the real-audio bench.
2. Pretraining: `configs/tiny_v2.yaml` (DeepCluster-v2, the method that learns on the real-audio bench) for a
   fixed wall-clock budget, with a progress bar; checkpoints as it goes.
3. Evaluation: `decar bench` with the default probe (3 seeds, 95 % intervals, paired marks) of the fresh model
   against the same architecture at random init and log-mel statistics (and the bundled model, once decar
   ships one).

Rerunning the same command reuses what is finished: the audio, the pretraining run, the evaluations.
"""

from __future__ import annotations

import logging
from pathlib import Path

from decar.testing import SOUND_KINDS, write_hear_task, write_synthetic_corpus

log = logging.getLogger(__name__)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny_v2.yaml"
NOISE_RATIO = 1.5
"""White noise added to every task clip (RMS relative to the clip's): the clean tasks are solved by every model."""
TASKS = {
    "sound_family": SOUND_KINDS,
    "pitch_direction": ("chirp_up", "chirp_down", "tone"),
}


def write_demo_audio(out: Path) -> tuple[Path, Path]:
    """The demo's corpus and bench folders (written once; a rerun keeps them)."""
    corpus, bench = out / "audio", out / "bench"
    if not corpus.is_dir():
        write_synthetic_corpus(corpus, files_per_kind=24, seconds=1.5)
    for seed, (name, kinds) in enumerate(TASKS.items()):
        folder = bench / "tasks" / name
        if not (folder / "task_metadata.json").is_file():
            counts = {"train": 12, "valid": 6, "test": 10}
            write_hear_task(folder, name, kinds, seed=100 + seed, per_split=counts, noise_ratio=NOISE_RATIO)
    return corpus, bench


def run_demo(out: Path, minutes: float = 3.0, seeds: int = 3) -> str:
    """Generate the audio, pretrain the tiny config for `minutes`, compare it with the baselines; the report."""
    from decar.config import load_config
    from decar.embed import bundled_model_path
    from decar.evaluate.bench import run_bench
    from decar.pretrain import fit

    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    out = Path(out)
    corpus, bench = write_demo_audio(out)
    run = out / "run"
    # the budget, not the epochs, ends the run
    overrides = [f"time_budget_minutes={minutes}", "optim.epochs=1000", "device=cpu"]
    config = load_config(CONFIG if CONFIG.is_file() else None, overrides)
    log.info("pretraining %s for %g min on %s", CONFIG.name, minutes, corpus)
    fit(config, corpus, run, resume=(run / "checkpoint.pt").is_file())
    checkpoint = str(run / "checkpoint.pt")
    models = [checkpoint, f"random:{checkpoint}", "logmel-stats"]
    bundled = bundled_model_path()
    if bundled is not None:
        models.insert(0, str(bundled))
    else:
        log.info("no pretrained model ships with this decar release yet: the table has none")
    return run_bench(bench, models, out / "results", ("linear",), seeds)

"""`decar demo`: the whole chain in minutes on a CPU: audio → pretraining → evaluation → comparison table.

1. Audio: a small real-audio bench from seven free Debian packages (about 56 MB: speech, keyboard clicks,
   desktop and phone sounds, CC0 samples, two General MIDI SoundFonts), built by `decar data build-bench`'s
   machinery with the demo plan at a small scale: a corpus of about 2,000 clips (500 recordings, 1,450 notes,
   phrases and drum patterns rendered from one SoundFont) and two HEAR tasks of about 400 clips each,
   instrument family (test notes from a SoundFont the corpus never uses) and spoken digits (test voices the
   corpus never hears). Where the packages cannot be fetched (no network, no apt) it says why and uses
   generated audio instead: eight sound families and two tasks in loud noise (`--generated` asks for them).
2. Pretraining: `configs/tiny_v2.yaml` (DeepCluster-v2, the method that learns on the real-audio bench) for a
   fixed wall-clock budget, with a progress bar; checkpoints as it goes.
3. Evaluation: `decar bench` with the default probe (3 seeds, 95 % intervals, paired marks) of the fresh model
   and of the model decar ships against the same architecture at random init and log-mel statistics. The
   shipped model was pretrained on the full bench corpus, which holds no demo task clip (its instrument test
   SoundFont is held out there too) but may hold other sentences by the demo's test voices.

Rerunning the same command reuses what is finished: the audio, the pretraining run, the evaluations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from decar.testing import SOUND_KINDS, write_hear_task, write_synthetic_corpus

log = logging.getLogger(__name__)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny_v2.yaml"
DEMO_SCALE = 0.05
"""Scale of the demo bench's rendered clips and tasks (of the full bench's counts); its recordings are all used."""
DEFAULT_CACHE = Path("~/.cache/decar/debian")
NOISE_RATIO = 1.5
"""White noise added to every generated task clip (RMS relative to the clip's): the clean tasks are solved by
every model."""
TASKS = {
    "sound_family": SOUND_KINDS,
    "pitch_direction": ("chirp_up", "chirp_down", "tone"),
}


@dataclass(frozen=True)
class DemoAudio:
    """Where the demo's corpus and tasks are, and what they are (for the report)."""

    corpus: Path
    bench: Path
    kind: str
    description: str


def demo_audio(out: Path, cache_dir: Path = DEFAULT_CACHE, generated: bool = False) -> DemoAudio:
    """The real-audio demo bench, or generated audio when asked or when the Debian packages cannot be had."""
    if not generated:
        from decar.corpora.bench import DEMO_PLAN, BenchError, build_bench
        from decar.corpora.debian import PackageUnavailableError

        try:
            build_bench(out / "bench", Path(cache_dir).expanduser(), scale=DEMO_SCALE, plan=DEMO_PLAN)
        except (PackageUnavailableError, BenchError, ImportError, OSError) as err:
            log.warning("the demo's Debian packages cannot be had (%s); using generated audio instead", err)
        else:
            packages = ", ".join(DEMO_PLAN.packages)
            return DemoAudio(
                out / "bench" / "corpus" / "files.txt", out / "bench", "debian", f"real audio from {packages}"
            )
    corpus, bench = write_demo_audio(out / "generated")
    return DemoAudio(corpus, bench, "generated", "generated audio (tones, chords, noises, chirps, clicks)")


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


def run_demo(
    out: Path, minutes: float = 3.0, seeds: int = 3, cache_dir: Path = DEFAULT_CACHE, generated: bool = False
) -> tuple[str, DemoAudio]:
    """Get the audio, pretrain the tiny config for `minutes`, compare it with the baselines: the report, and
    which audio it used."""
    from decar.config import load_config
    from decar.embed import bundled_model_path
    from decar.evaluate import PRETRAINED
    from decar.evaluate.bench import run_bench
    from decar.pretrain import fit

    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    out = Path(out)
    audio = demo_audio(out, cache_dir, generated)
    run = out / f"run_{audio.kind}"
    # the budget, not the epochs, ends the run
    overrides = [f"time_budget_minutes={minutes}", "optim.epochs=1000", "device=cpu"]
    config = load_config(CONFIG if CONFIG.is_file() else None, overrides)
    log.info("pretraining %s for %g min on %s", CONFIG.name, minutes, audio.description)
    fit(config, audio.corpus, run, resume=(run / "checkpoint.pt").is_file())
    checkpoint = str(run / "checkpoint.pt")
    models = [checkpoint, f"random:{checkpoint}", "logmel-stats"]
    if bundled_model_path() is not None:
        models.insert(0, PRETRAINED)
    else:
        log.info("no pretrained model ships with this decar release yet: the table has none")
    return run_bench(audio.bench, models, out / f"results_{audio.kind}", ("linear",), seeds), audio

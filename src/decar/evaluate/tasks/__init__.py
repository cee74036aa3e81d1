"""Task loaders. `load_task(spec)` reads a built-in corpus (`NAME:ROOT`), a HEAR task folder or a manifest."""

from __future__ import annotations

import importlib
from pathlib import Path

from decar.evaluate.tasks import base
from decar.evaluate.tasks.base import Clip, Split, Task, TaskError, get_loader, register_task

_LOADER_MODULES = (
    "speech_commands",
    "voxceleb",
    "iemocap",
    "librispeech",
    "voxforge",
    "musan",
    "nsynth",
    "birdsong",
    "tut",
    "urbansound",
    "esc50",
    "audioset",
)

__all__ = ["Clip", "Split", "Task", "TaskError", "list_tasks", "load_task", "register_task"]


def _register_builtin_loaders() -> None:
    for module in _LOADER_MODULES:
        try:
            importlib.import_module(f"decar.evaluate.tasks.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"decar.evaluate.tasks.{module}":
                raise


def list_tasks() -> list[str]:
    """Names of the built-in corpus loaders, for `NAME:ROOT` task specs."""
    _register_builtin_loaders()
    return base.list_tasks()


def load_task(spec: str | Path) -> Task:
    """Read a task.

    Args:
        spec: `NAME:ROOT` for a built-in corpus in its standard layout (see `list_tasks()`), a HEAR task folder
            (holding task_metadata.json), or a manifest file (.csv or .jsonl: path, label, split or fold).
    """
    text = str(spec)
    name, sep, root = text.partition(":")
    if sep and name in list_tasks():
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise TaskError(f"task {name}: {folder} is not a folder")
        return get_loader(name)(folder)
    path = Path(text).expanduser()
    if path.is_dir() and (path / "task_metadata.json").is_file():
        from decar.evaluate.tasks.hear import load_hear_task

        return load_hear_task(path)
    if path.is_file() and path.suffix.lower() in (".csv", ".jsonl"):
        from decar.evaluate.tasks.manifest import load_manifest

        return load_manifest(path)
    if path.is_dir():
        raise TaskError(
            f"{path} is not a task: no task_metadata.json (HEAR) inside; for a built-in corpus write NAME:{path}"
        )
    raise TaskError(
        f"cannot read task {text!r}: expected NAME:ROOT with NAME in {list_tasks()}, a HEAR task folder, "
        "or a .csv/.jsonl manifest"
    )

"""Debian packages as audio sources: fetched with `apt-get download`, unpacked with `dpkg-deb -x`, no root needed.

A package is resolved (``apt-cache show``), downloaded and unpacked once into a cache::

    CACHE/debs/PKG_VERSION_all.deb
    CACHE/extracted/PKG/...            the package's files (usr/share/...)
    CACHE/extracted/PKG.json           {"package", "version"}: written last, so its presence means "complete"

Some packages are RESERVED for an independent outside check of models trained here: they are refused by name
before anything is downloaded, and also when the name asked for is an alias of one (a virtual name, an
architecture or version suffix, a package that Provides one or is built from the same source). Dependencies
are never fetched: every package is asked for by name, alone.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from decar._io import atomic_write_text

RESERVED_PATTERNS: tuple[str, ...] = (
    "freepats*",
    "gcin-voice*",
    "klettres*",
    "fillets-ng*",
    "asterisk*",
    "openarena*",
    "lmms*",
    "warzone2100*",
    "freedoom*",
    "pingus*",
    "sound-icons*",
)
"""Package families whose audio is kept for an outside check; whole families, so that siblings with the same
audio (openarena-088-data, asterisk-prompt-*, fillets-ng-data-*) are refused too."""

DEFAULT_CACHE = Path("~/.cache/decar/debian")

Runner = Callable[[Sequence[str], Path], subprocess.CompletedProcess[str]]


class ReservedPackageError(ValueError):
    """A reserved package (or an alias of one) was asked for."""


class PackageUnavailableError(RuntimeError):
    """apt cannot resolve, download or unpack a package: the message names it."""


@dataclass(frozen=True)
class Package:
    """An unpacked package: ``root`` holds its files as installed (root/usr/share/...)."""

    name: str
    version: str
    root: Path

    def copyright_text(self) -> str:
        path = self.root / "usr/share/doc" / self.name / "copyright"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def canonical_name(requested: str) -> str:
    """The bare package name in a request: 'FreePats:all=1.0' -> 'freepats' (apt accepts all those forms)."""
    name = requested.strip().lower()
    for separator in ("=", "/", ":"):
        name = name.split(separator, 1)[0]
    return name


def is_reserved(name: str) -> bool:
    """Whether a package name (in any form apt accepts) belongs to a reserved family."""
    bare = canonical_name(name)
    return any(fnmatch.fnmatchcase(bare, pattern) for pattern in RESERVED_PATTERNS)


def refuse_reserved(name: str, context: str = "") -> None:
    if is_reserved(name):
        why = f" ({context})" if context else ""
        raise ReservedPackageError(
            f"package {name!r}{why} is reserved for an independent outside check and is never fetched or used; "
            f"reserved families: {', '.join(RESERVED_PATTERNS)}"
        )


_KNOWN_LICENCES = {
    "gpl": "GPL",
    "lgpl": "LGPL",
    "mit": "MIT",
    "bsd": "BSD",
    "apache": "Apache",
    "artistic": "Artistic",
    "cc0": "CC0",
    "cc-by": "CC-BY",
    "cc-by-sa": "CC-BY-SA",
    "creative commons attribution": "CC-BY",
    "creative commons attribution-sharealike": "CC-BY-SA",
    "creative commons attribute share-alike": "CC-BY-SA",
    "creative commons": "Creative Commons",
    "public domain": "public domain",
}
_KNOWN_PATTERN = re.compile(
    r"\b(" + "|".join(map(re.escape, sorted(_KNOWN_LICENCES, key=len, reverse=True))) + r")\b", re.IGNORECASE
)


def licences(copyright_text: str) -> list[str]:
    """Licence names of a Debian copyright file: the DEP-5 'License:' fields, else well-known names in the text."""
    found = {
        match.group(1).strip() for match in re.finditer(r"^License:[ \t]*(\S[^\n]*)$", copyright_text, re.MULTILINE)
    }
    if not found:
        found = {_KNOWN_LICENCES[match.group(1).lower()] for match in _KNOWN_PATTERN.finditer(copyright_text)}
    return sorted(found) or ["see usr/share/doc copyright"]


def _run(command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(command), 127, "", f"{command[0]} is not installed on this machine")


def _fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        key, sep, value = line.partition(":")
        if sep and key and not key[0].isspace():
            fields[key.strip()] = value.strip()
    return fields


def _related_names(fields: dict[str, str]) -> list[tuple[str, str]]:
    """(name, why) for every name a package answers to: itself, its source package, what it Provides."""
    related = [(fields.get("Package", ""), "resolved package")]
    if fields.get("Source"):
        related.append((fields["Source"].split()[0], "its source package"))
    for provided in fields.get("Provides", "").split(","):
        if provided.strip():
            related.append((provided.strip().split()[0], "a name it provides"))
    return related


class DebianCache:
    """Fetch-and-unpack of Debian packages into a cache folder, refusing reserved ones.

    Args:
        cache_dir: the cache (see the module docstring for its layout).
        runner: how commands run; tests pass a fake one, so that no network or apt is needed.
    """

    def __init__(self, cache_dir: str | Path = DEFAULT_CACHE, runner: Runner = _run) -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.runner = runner

    def _marker(self, name: str) -> Path:
        return self.cache_dir / "extracted" / f"{name}.json"

    def cached(self, name: str) -> Package | None:
        marker = self._marker(name)
        if not marker.is_file():
            return None
        info = json.loads(marker.read_text(encoding="utf-8"))
        return Package(info["package"], info["version"], self.cache_dir / "extracted" / name)

    def fetch(self, requested: str) -> Package:
        """The unpacked package, downloading it first when the cache lacks it.

        Raises:
            ReservedPackageError: the package, or anything it is an alias of, is reserved.
            PackageUnavailableError: apt cannot resolve or download it, or dpkg cannot unpack it.
        """
        refuse_reserved(requested)
        name = canonical_name(requested)
        package = self.cached(name)
        if package is not None:
            return package
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fields = self._resolve(requested)
        version = fields["Version"]
        deb = self._download(fields["Package"], version)
        return self._unpack(fields["Package"], version, deb)

    def _resolve(self, requested: str) -> dict[str, str]:
        result = self.runner(["apt-cache", "show", "--no-all-versions", requested], self.cache_dir)
        stanza = result.stdout.strip().split("\n\n")[0] if result.returncode == 0 else ""
        fields = _fields(stanza)
        if "Package" not in fields or "Version" not in fields:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise PackageUnavailableError(
                f"Debian package {requested!r} is unavailable: apt-cache show found no installable candidate"
                + (f" ({detail[-1]})" if detail else "")
                + "; if apt's package lists are empty or old, run `apt-get update` (as root) once"
            )
        for name, why in _related_names(fields):
            refuse_reserved(name, f"{why} of {requested!r}")
        return fields

    def _download(self, name: str, version: str) -> Path:
        folder = self.cache_dir / "debs"
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
            result = self.runner(["apt-get", "download", f"{name}={version}"], Path(tmp))
            debs = sorted(Path(tmp).glob("*.deb"))
            if result.returncode != 0 or len(debs) != 1:
                detail = (result.stderr or result.stdout).strip().splitlines()
                raise PackageUnavailableError(
                    f"Debian package {name!r} ({version}) could not be downloaded with apt-get download"
                    + (f": {detail[-1]}" if detail else "")
                )
            target = folder / debs[0].name
            debs[0].replace(target)
        return target

    def _unpack(self, name: str, version: str, deb: Path) -> Package:
        info = self.runner(["dpkg-deb", "-f", str(deb)], self.cache_dir)
        for related, why in _related_names(_fields(info.stdout)):
            if related and is_reserved(related):
                deb.unlink(missing_ok=True)
                refuse_reserved(related, f"{why} of the downloaded {deb.name}")
        target = self.cache_dir / "extracted" / name
        staging = target.with_name(f".{name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        result = self.runner(["dpkg-deb", "-x", str(deb), str(staging)], self.cache_dir)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise PackageUnavailableError(f"Debian package {name!r}: dpkg-deb -x failed: {result.stderr.strip()}")
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
        atomic_write_text(self._marker(name), json.dumps({"package": name, "version": version}) + "\n")
        return Package(name, version, target)

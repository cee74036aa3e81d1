"""The package fetcher: reserved packages are refused in every form before anything is downloaded."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from decar.corpora.debian import (
    DebianCache,
    PackageUnavailableError,
    ReservedPackageError,
    canonical_name,
    is_reserved,
    licences,
)
from decar.corpora.sources import PACKAGES

RESERVED_EXAMPLES = (
    "freepats",
    "gcin-voice",
    "klettres-data",
    "fillets-ng-data-cs",
    "fillets-ng-data-nl",
    "fillets-ng-data-de",
    "asterisk-core-sounds-en-wav",
    "asterisk-prompt-fr-armelle",
    "openarena-data",
    "lmms-common",
    "warzone2100-data",
    "freedoom",
    "pingus-data",
    "sound-icons",
)


class FakeApt:
    """Answers apt-cache/apt-get/dpkg-deb like Debian would for a few packages; records every command."""

    def __init__(self, stanzas: dict[str, str], deb_fields: dict[str, str] | None = None) -> None:
        self.stanzas = stanzas
        self.deb_fields = deb_fields or {}
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        command = list(command)
        self.commands.append(command)
        if command[:2] == ["apt-cache", "show"]:
            stanza = self.stanzas.get(command[-1])
            return subprocess.CompletedProcess(command, 0 if stanza else 100, stanza or "", "E: No packages found")
        if command[:2] == ["apt-get", "download"]:
            name, version = command[2].split("=")
            if name == "broken-download":
                return subprocess.CompletedProcess(command, 100, "", "E: Failed to fetch broken-download")
            (cwd / f"{name}_{version}_all.deb").write_bytes(b"deb")
            return subprocess.CompletedProcess(command, 0, "", "")
        if command[:2] == ["dpkg-deb", "-f"]:
            name = Path(command[2]).name.split("_")[0]
            fields = self.deb_fields.get(name, self.stanzas.get(name, f"Package: {name}\n"))
            return subprocess.CompletedProcess(command, 0, fields, "")
        if command[:2] == ["dpkg-deb", "-x"]:
            (Path(command[3]) / "usr/share/doc").mkdir(parents=True)
            return subprocess.CompletedProcess(command, 0, "", "")
        raise AssertionError(f"unexpected command {command}")

    def downloads(self) -> list[str]:
        return [command[2] for command in self.commands if command[:2] == ["apt-get", "download"]]


@pytest.mark.parametrize("name", RESERVED_EXAMPLES)
@pytest.mark.parametrize("form", ["{}", "{}:all", "{}=1.0-1", "{}/bookworm", "  {}  ", "{}:amd64=2"])
def test_reserved_names_are_refused_in_every_form_apt_accepts(name: str, form: str, tmp_path: Path) -> None:
    request = form.format(name).upper() if form == "{}:all" else form.format(name)
    assert is_reserved(request)
    apt = FakeApt({})
    with pytest.raises(ReservedPackageError, match="reserved"):
        DebianCache(tmp_path, runner=apt).fetch(request)
    assert apt.commands == []  # refused before apt was even asked


@pytest.mark.parametrize(
    "stanza",
    [
        "Package: freepats\nVersion: 1\n",  # a virtual name or alias resolving to a reserved package
        "Package: innocent-sounds\nVersion: 1\nProvides: sound-icons\n",
        "Package: innocent-data\nVersion: 1\nSource: fillets-ng-data\n",
        "Package: innocent-voice\nVersion: 1\nSource: asterisk-core-sounds (1.6)\n",
    ],
)
def test_aliases_of_reserved_packages_are_refused_before_download(stanza: str, tmp_path: Path) -> None:
    apt = FakeApt({"innocent-alias": stanza})
    with pytest.raises(ReservedPackageError):
        DebianCache(tmp_path, runner=apt).fetch("innocent-alias")
    assert apt.downloads() == []


def test_a_downloaded_deb_that_turns_out_reserved_is_deleted_unextracted(tmp_path: Path) -> None:
    apt = FakeApt(
        {"harmless": "Package: harmless\nVersion: 1\n"}, {"harmless": "Package: harmless\nProvides: freepats\n"}
    )
    with pytest.raises(ReservedPackageError):
        DebianCache(tmp_path, runner=apt).fetch("harmless")
    assert not list((tmp_path / "debs").glob("*.deb"))
    assert not (tmp_path / "extracted" / "harmless").exists()


def test_no_package_the_bench_uses_is_reserved() -> None:
    assert [source.name for source in PACKAGES if is_reserved(source.name)] == []


def test_fetch_unpacks_once_and_then_uses_the_cache(tmp_path: Path) -> None:
    apt = FakeApt({"hedgewars-data": "Package: hedgewars-data\nVersion: 1.0.2-6\nSource: hedgewars\n"})
    cache = DebianCache(tmp_path, runner=apt)
    package = cache.fetch("hedgewars-data")
    assert (package.name, package.version) == ("hedgewars-data", "1.0.2-6")
    assert (package.root / "usr/share/doc").is_dir()
    assert apt.downloads() == ["hedgewars-data=1.0.2-6"]
    assert cache.fetch("hedgewars-data") == package
    assert len(apt.downloads()) == 1


@pytest.mark.parametrize("name", ["no-such-package", "broken-download"])
def test_an_unavailable_package_is_a_one_line_error_naming_it(name: str, tmp_path: Path) -> None:
    apt = FakeApt({"broken-download": "Package: broken-download\nVersion: 2\n"})
    with pytest.raises(PackageUnavailableError, match=name) as raised:
        DebianCache(tmp_path, runner=apt).fetch(name)
    assert "\n" not in str(raised.value)


def test_helpers() -> None:
    assert canonical_name(" FreePats:all=1.0 ") == "freepats"
    assert not is_reserved("hedgewars-data")
    assert licences("Files: *\nLicense: GPL-2+\n text\n\nFiles: a\nLicense: CC0\n") == ["CC0", "GPL-2+"]
    assert licences("This package is distributed under the MIT license.") == ["MIT"]

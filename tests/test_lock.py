"""requirements.lock and pyproject.toml agree, and the venv is the lock's.

`make install` installs the lock, not pyproject.toml's ranges, so a dependency added to or
tightened in pyproject.toml without `make lock` would go untested. These checks read two files and
the installed metadata: they are cheap and catch that drift, a lock without hashes, and a lock that
names an index address (pip-compile writes the machine's indexes in unless told not to).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.ci import ROOT

# One entry of the lock: `name==version \` then its `--hash=sha256:…` lines.
PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?: \\\n +--hash=sha256:[0-9a-f]{64})*)", re.M
)


def _locked() -> dict[str, tuple[Version, int]]:
    """Each locked package (canonical name) → (its version, how many hashes it has)."""
    text = (ROOT / "requirements.lock").read_text()
    return {
        canonicalize_name(name): (Version(version), hashes.count("--hash="))
        for name, version, hashes in PIN.findall(text)
    }


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(spec)
        for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    ]


def test_every_declared_dependency_is_pinned_in_the_lock_within_its_range() -> None:
    locked = _locked()
    assert len(locked) > 50, "requirements.lock parsed to almost nothing"
    problems = []
    for req in _declared():
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{req.name}=={locked[name][0]} is outside {req.specifier}")
    assert not problems, "; ".join(problems) + ": run make lock"


def test_every_pin_has_a_hash_and_the_lock_names_no_address() -> None:
    text = (ROOT / "requirements.lock").read_text()
    pinned = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9].*==", line)]
    assert len(pinned) == len(_locked()), "a pinned line does not have the form `name==version \\`"
    assert [name for name, (_, hashes) in _locked().items() if hashes == 0] == []
    assert "://" not in text and "--index-url" not in text and "--find-links" not in text


def test_the_installed_packages_are_the_locked_versions() -> None:
    """The venv running the tests was made from the lock (`make install`), not resolved afresh."""
    wrong = []
    for name, (version, _) in _locked().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} is not installed")
            continue
        if installed != version:
            wrong.append(f"{name} {installed} is installed, the lock says {version}")
    assert not wrong, "; ".join(wrong) + ": run make install"

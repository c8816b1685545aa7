"""The compose stack (docker/compose.yaml, docker/Dockerfile), checked without a Docker engine.

No engine runs on the build machines, so `make up` cannot be tried here. What can break
silently is checked instead: Debian's docker-compose validates and interpolates the file
offline, and every command a service runs is resolved against the installed package (a
renamed subcommand or option fails here, not in a user's `make up`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"
BIN = Path(sys.executable).parent

INSTALL_HINT = (
    "docker-compose is not installed, so docker/compose.yaml cannot be validated. Install Debian's "
    "package: `apt-get update && apt-get install -y docker-compose` (`make test` does this when run as root)."
)

CALSYNC_SERVICES = ("simulator", "migrate", "setup", "beat", "beat-standby", "worker", "flower")
JOBS = ("migrate", "setup")
DONE = "service_completed_successfully"
HEALTHY = "service_healthy"


def compose_config(env_file: Path) -> dict[str, Any]:
    """`docker-compose config` with only `env_file` as input, so the host's variables cannot leak in."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(INSTALL_HINT)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    proc = subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"docker-compose config rejected docker/compose.yaml:\n{proc.stderr}"
    config = yaml.safe_load(proc.stdout)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack with every variable at its default (an empty env file; a developer's docker/.env is ignored)."""
    empty = tmp_path_factory.mktemp("compose") / "empty.env"
    empty.write_text("", encoding="utf-8")
    return compose_config(empty)


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(config["services"])


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def commands(service: dict[str, Any]) -> Iterator[list[str]]:
    """Every program invocation of a service; `sh -c "a && b"` yields a and b."""
    args = argv(service.get("command", []))
    if args[:2] == ["sh", "-c"]:
        for part in re.split(r"&&|;|\|\|", args[2]):
            yield shlex.split(part)
    elif args:
        yield args


def all_commands(services: dict[str, dict[str, Any]], program: str) -> list[tuple[str, list[str]]]:
    return [(name, cmd) for name, svc in services.items() for cmd in commands(svc) if cmd and cmd[0] == program]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(instruction, rest) per line, grouped by FROM; continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest.strip()))
    return stages


def copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str, bool]]:
    """(sources, destination, from another stage) of each COPY."""
    found = []
    for word, rest in stage:
        if word == "COPY":
            parts = rest.split()
            from_stage = any(p.startswith("--from=") for p in parts)
            paths = [p for p in parts if not p.startswith("--")]
            found.append((paths[:-1], paths[-1], from_stage))
    return found


def dockerfile_args() -> dict[str, str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    return dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))


# --- the file itself ---------------------------------------------------------------------


def test_compose_file_is_valid_and_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    expected = {"postgres", "redis", "mailpit", *CALSYNC_SERVICES}
    assert expected <= set(services), f"missing services: {sorted(expected - set(services))}"


def test_env_example_documents_the_defaults(config: dict[str, Any]) -> None:
    """docker/.env.example sets each variable to the default compose.yaml uses: copying it changes nothing."""
    assert compose_config(ENV_EXAMPLE) == config
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text(encoding="utf-8")))
    documented = set(re.findall(r"^#?\s*(\w+)=", ENV_EXAMPLE.read_text(encoding="utf-8"), flags=re.M))
    assert used - documented == set(), "variables of compose.yaml missing from docker/.env.example"
    assert documented - used - {"COMPOSE_PROJECT_NAME"} == set(), "docker/.env.example sets unused variables"


# --- commands and entry points -----------------------------------------------------------


def image_path_to_repo(arg: str) -> str:
    """Map a path inside the image back to the repository file the Dockerfile copied there."""
    for sources, dest, from_stage in copies(dockerfile_stages()[-1]):
        if from_stage or len(sources) != 1:
            continue
        prefix = dest.rstrip("/") + "/"
        if arg.startswith(prefix):
            return str(REPO / sources[0] / arg[len(prefix) :])
    return arg


def test_calsync_commands_exist_and_parse(services: dict[str, dict[str, Any]]) -> None:
    from calsync.cli.main import cli

    found = all_commands(services, "calsync")
    assert {name for name, _ in found} >= {"simulator", "migrate", "setup"}
    helped: set[tuple[str, ...]] = set()
    for name, cmd in found:
        args = [image_path_to_repo(a) for a in cmd[1:]]
        # Walk the group tree the way Click does, then parse the leaf's own arguments.
        command: click.Command = cli
        path: list[str] = []
        ctx = cli.make_context("calsync", [], resilient_parsing=True)
        while args and isinstance(command, click.Group):
            sub = command.get_command(ctx, args[0])
            assert sub is not None, f"{name}: `calsync {' '.join([*path, args[0]])}` does not exist"
            command, path, args = sub, [*path, args[0]], args[1:]
        if tuple(path) not in helped:  # the console script itself, once per subcommand
            run = subprocess.run([str(BIN / "calsync"), *path, "--help"], capture_output=True, text=True)
            assert run.returncode == 0, f"{name}: calsync {' '.join(path)} --help failed:\n{run.stderr}"
            helped.add(tuple(path))
        try:
            command.make_context(" ".join(["calsync", *path]), list(args))
        except Exception as exc:
            pytest.fail(f"{name}: `{shlex.join(cmd)}` does not parse: {exc}")


def test_setup_job_sets_valid_settings_and_imports_the_example(services: dict[str, dict[str, Any]]) -> None:
    from calsync.settings import validate_one

    steps = [cmd for _, cmd in all_commands({"setup": services["setup"]}, "calsync")]
    settings = {cmd[3]: cmd[4] for cmd in steps if cmd[1:3] == ["settings", "set"]}
    assert settings["exchange_url"] == "http://simulator:8080/EWS/Exchange.asmx"
    current = None  # applied in order, as the setup job's commands run
    for key, value in settings.items():
        current = validate_one(key, value, current)
    imports = [cmd for cmd in steps if cmd[1:3] == ["operators", "import"]]
    assert len(imports) == 1
    assert Path(image_path_to_repo(imports[0][3])) == REPO / "examples" / "operators.csv"
    assert (REPO / "examples" / "operators.csv").is_file()


def test_simulator_is_the_default_exchange(config: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    from calsync.simulator.core import DEFAULT_ACCOUNT

    (cmd,) = list(commands(services["simulator"]))
    assert cmd[:3] == ["calsync", "simulator", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8080"
    # The worker logs in with the simulator's service account: username from the
    # environment, password from the compose secret.
    env = services["worker"]["environment"]
    assert env["CALSYNC_EWS_USERNAME"] == DEFAULT_ACCOUNT[0]
    assert secret_file(config, "worker").read_text(encoding="utf-8").strip() == DEFAULT_ACCOUNT[1]


def secret_file(config: dict[str, Any], service: str) -> Path:
    """The host file behind the one secret a service mounts."""
    (mounted,) = config["services"][service]["secrets"]
    source = mounted["source"] if isinstance(mounted, dict) else mounted
    return Path(config["secrets"][source]["file"])


def celery_help(sub: str, args: list[str]) -> str:
    run = subprocess.run(
        [str(BIN / "celery"), "-A", "calsync", sub, *args, "--help"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"`celery -A calsync {sub} {shlex.join(args)}` is refused:\n{run.stderr}"
    return run.stdout


def test_celery_commands_load_the_app_and_accept_their_options(services: dict[str, dict[str, Any]]) -> None:
    from calsync import celeryconfig

    found = all_commands(services, "celery")
    roles = {name: cmd[3] for name, cmd in found}
    assert roles == {"beat": "beat", "beat-standby": "beat", "worker": "worker", "flower": "flower"}
    for name, cmd in found:
        assert cmd[1:3] == ["-A", "calsync"], f"{name}: the app is `-A calsync`"
        sub, args = cmd[3], cmd[4:]
        if sub == "flower":
            import flower.options  # noqa: F401  (defines Flower's tornado options)
            from tornado.options import options

            celery_help("flower", [])
            for arg in args:
                assert arg.startswith("--") and arg[2:].split("=")[0] in options, f"flower: unknown option {arg}"
            continue
        # Appending --help makes Click parse every option (an unknown one fails) without running anything.
        text = celery_help(sub, args)
        if sub == "worker":
            pool = args[args.index("-P") + 1]
            assert re.search(rf"--pool \[[^\]]*\b{pool}\b", text), f"worker pool {pool} unknown to celery"
            queues = set(args[args.index("-Q") + 1].split(","))
            assert queues == {q.name for q in celeryconfig.task_queues}, "worker must serve every queue"


def test_two_beats_and_redbeat_leads_one() -> None:
    from redbeat import RedBeatScheduler

    from calsync import celeryconfig
    from calsync.beat import Scheduler

    # calsync's scheduler is redbeat's (its lock makes one beat lead), made to survive a wiped Redis.
    assert celeryconfig.beat_scheduler == "calsync.beat:Scheduler" and issubclass(Scheduler, RedBeatScheduler)
    assert celeryconfig.redbeat_lock_timeout == 30, "docs/operations.md states a 30 s failover"


# --- scaling, Redis, Flower, health ---------------------------------------------------------


def test_worker_can_scale(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container name stops `--scale worker=N`"
    assert not worker.get("ports"), "a published port stops `--scale worker=N`"
    assert "hostname" not in worker, "workers need distinct node names (celery@<container id>)"


def test_redis_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    cmd = argv(services["redis"]["command"])
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"


def test_flower_requires_basic_auth(services: dict[str, dict[str, Any]]) -> None:
    (cmd,) = list(commands(services["flower"]))
    auth = [a.split("=", 1)[1] for a in cmd if a.startswith("--basic-auth=")]
    assert auth and re.fullmatch(r"[^:,]+:[^,]+(,[^:,]+:[^,]+)*", auth[0]), "Flower needs --basic-auth=user:password"


def test_long_running_services_are_healthy_or_wait_for_healthy_ones(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        for target, cond in depends.items():
            condition = cond["condition"]
            if condition == HEALTHY:
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
            elif condition == DONE:
                assert target in JOBS, f"{name} waits for {target} to exit, but it is not a one-shot job"
            else:
                pytest.fail(f"{name}: depends_on {target} without a health or completion condition")
        if name in JOBS:
            assert svc.get("restart") == "no", f"{name} is a one-shot job"
            continue
        assert svc.get("restart") in ("always", "unless-stopped"), f"{name} must be restarted when it exits"
        assert "healthcheck" in svc or depends, f"{name} has no healthcheck and waits for nothing"
    assert services["postgres"]["healthcheck"]["test"][-1].startswith("pg_isready")
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == HEALTHY
    assert services["setup"]["depends_on"]["migrate"]["condition"] == DONE
    assert services["worker"]["depends_on"]["migrate"]["condition"] == DONE


def test_migrations_run_before_anything_reads_the_schema(services: dict[str, dict[str, Any]]) -> None:
    steps = [cmd[:3] for _, cmd in all_commands({"migrate": services["migrate"]}, "calsync")]
    assert steps == [["calsync", "db", "create"], ["calsync", "db", "upgrade"]]


# --- environment and secrets ---------------------------------------------------------------


def test_environment_names_real_settings_and_no_password(
    config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    from calsync.config import EnvConfig

    known = {f"CALSYNC_{field.upper()}" for field in EnvConfig.model_fields}
    for name in CALSYNC_SERVICES:
        env = services[name]["environment"]
        assert {k for k in env if k.startswith("CALSYNC_")} <= known, f"{name}: unknown CALSYNC_ variable"
        assert "CALSYNC_EWS_PASSWORD" not in env, f"{name}: the EWS password belongs in a secret file"
        assert env["CALSYNC_SMTP_URL"] == "smtp://mailpit:1025"
        assert env["CALSYNC_DATABASE_URL"].endswith("@postgres:5432/calsync")
        assert env["CALSYNC_REDIS_URL"].startswith("redis://redis:6379/")
        secret = PurePosixPath(env["CALSYNC_EWS_PASSWORD_FILE"])
        mounted = [s["source"] if isinstance(s, dict) else s for s in services[name]["secrets"]]
        assert secret.parent == PurePosixPath("/run/secrets") and secret.name in mounted
        assert secret_file(config, name).is_file()


# --- the image ---------------------------------------------------------------------------------


def test_image_build_context_holds_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in CALSYNC_SERVICES:
        build = services[name]["build"]
        assert Path(build["context"]).resolve() == REPO
        assert (Path(build["context"]) / build["dockerfile"]).resolve() == DOCKERFILE


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    allowed = [
        line[1:].removesuffix("/**")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    for stage in dockerfile_stages():
        for sources, _, from_stage in copies(stage):
            if from_stage:
                continue
            for src in sources:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
                assert src.rstrip("/") in allowed, f"Dockerfile copies {src}, which .dockerignore leaves out"


def test_runtime_image_is_slim_non_root_and_compiler_free() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a builder and a runtime stage"
    runtime = stages[-1]
    base = runtime[0][1].split()[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: dockerfile_args()[m.group(1)], base)
    assert base == "python:3.11-slim"
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage runs as a non-root user"
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    assert not re.search(r"\b(gcc|build-essential|apt-get install|pip install)\b", runs)
    assert [(s, d) for s, d, f in copies(runtime) if f] == [(["/opt/venv"], "/opt/venv")]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET)", text, flags=re.M | re.I), "no secrets in the image"

"""Static checks of docker-compose.yml, the Dockerfiles and the monitoring files (no Docker engine needed).

What a user with Docker relies on: every image builds from files that exist, every setting is
documented, secrets are required, nothing listens beyond 127.0.0.1, dependencies wait for health,
every job runs a real `recsys` command, and the dashboard/alerts only query metrics the service exposes.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import typer
import yaml

from shared.cli import build_app
from zadanie4.observability.prometheus_metrics import create_metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "recsys.json"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


SERVICES: dict[str, Any] = load_yaml(COMPOSE_FILE)["services"]
REQUIRED_SERVICES = {
    "redis",
    "postgres",
    "mlflow",
    "zadanie1",
    "zadanie2",
    "zadanie3",
    "zadanie4",
    "prometheus",
    "grafana",
    "locust",
}
JOB_SERVICES = ("zadanie1", "zadanie2", "zadanie3")
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; "$$" escapes a literal "$".
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
# $VAR without braces: compose interpolates it too.
BARE_VARIABLE = re.compile(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")
SHELL_FLAGS_WITH_SCRIPT = re.compile(r"^-[a-z]*c[a-z]*$")
# Compose-spec service keys (a typo such as `depend_on` would silently do nothing).
KNOWN_SERVICE_KEYS = {
    "build", "command", "container_name", "depends_on", "entrypoint", "env_file", "environment", "expose",
    "healthcheck", "image", "labels", "logging", "mem_limit", "networks", "ports", "profiles", "pull_policy",
    "read_only", "restart", "security_opt", "stop_grace_period", "tmpfs", "ulimits", "user", "volumes",
    "working_dir", "deploy", "cap_drop", "init", "shm_size",
}  # fmt: skip
# Non-`recsys` shell steps allowed in service commands (anything else must be a recsys command).
ALLOWED_SHELL_STEPS = (
    re.compile(r"^mkdir -p /artifacts/[\w/.-]+$"),
    re.compile(r"^test -f /data/[\w/.-]+$"),
    re.compile(r"^exec locust -f /locust/\S+ "),
)


def _compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


def _interpolate(text: str) -> str:
    """Resolve ${VAR:-default} to its default and any other variable to a placeholder value."""
    return VARIABLE.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else "placeholder", text)


def _command_lines(service: dict[str, Any]) -> list[str]:
    """The shell steps a service runs: `sh -c` scripts split into lines, or the command itself."""
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, str):
        command = shlex.split(command)
    if len(command) >= 3 and command[0] in ("sh", "bash") and SHELL_FLAGS_WITH_SCRIPT.match(command[1]):
        lines = re.split(r"\n|&&|\|\||;", command[2])
    else:
        lines = [shlex.join(command)]
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _recsys_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for name, service in SERVICES.items():
        for line in _command_lines(service):
            tokens = shlex.split(_interpolate(line))
            if tokens[:1] == ["exec"]:
                tokens = tokens[1:]
            if tokens[:1] == ["recsys"]:
                commands.append((name, tokens[1:]))
    return commands


RECSYS_COMMANDS = _recsys_commands()


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {target: condition}, for both the list and the mapping syntax."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {target: (spec or {}).get("condition", "service_started") for target, spec in depends.items()}


def _closure(name: str) -> set[str]:
    seen: set[str] = set()
    stack = [name]
    while stack:
        for target in _depends_on(SERVICES[stack.pop()]):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _context(service: dict[str, Any]) -> Path:
    build = service["build"]
    return REPO_ROOT / (build if isinstance(build, str) else build.get("context", "."))


def _dockerfile(service: dict[str, Any]) -> Path:
    build = service["build"]
    return _context(service) / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))


def _service_environment(name: str) -> dict[str, str]:
    """A service's environment as compose passes it (defaults applied, secrets as placeholders)."""
    environment = SERVICES[name].get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {key: _interpolate(str(value)) for key, value in environment.items()}


def _env_example_variables() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume.get("source", ""), volume.get("target", "")
        if source.startswith(("./", "../", "/")):
            mounts.append((source, target))
    return mounts


# --- services and images -------------------------------------------------------------------------
def test_compose_declares_every_service_of_the_system() -> None:
    assert set(SERVICES) >= REQUIRED_SERVICES
    assert SERVICES["locust"].get("profiles") == ["loadtest"], "locust only runs with --profile loadtest"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_services_use_only_known_compose_keys(name: str) -> None:
    unknown = set(SERVICES[name]) - KNOWN_SERVICE_KEYS
    assert not unknown, f"{name}: unknown service keys {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if "build" in s))
def test_every_build_context_and_dockerfile_exists(name: str) -> None:
    dockerfile = _dockerfile(SERVICES[name])
    assert dockerfile.parent.is_dir(), f"{name}: build context {dockerfile.parent} is missing"
    assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if "build" in s))
def test_every_file_a_dockerfile_copies_exists_in_its_context(name: str) -> None:
    dockerfile = _dockerfile(SERVICES[name])
    context = _context(SERVICES[name])
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        tokens = line.split()
        if tokens[:1] != ["COPY"] or any(t.startswith("--from") for t in tokens):
            continue
        sources = [t for t in tokens[1:-1] if not t.startswith("--")]
        for source in sources:
            assert (context / source).exists(), f"{dockerfile}: COPY source {source} missing in {context}"


@pytest.mark.parametrize("part", ["zadanie1", "zadanie2", "zadanie3", "zadanie4"])
def test_each_task_dockerfile_is_multi_stage_slim_and_non_root(part: str) -> None:
    text = (REPO_ROOT / part / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE)
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    names = {name for _, name in stages if name}
    assert all(image.startswith("python:3.11-slim") or image in names for image, _ in stages)
    # the runtime stage: the one the compose service of the part builds, else the last
    target = (SERVICES.get(part, {}).get("build") or {}).get("target")
    blocks = {
        name: body
        for name, body in re.findall(
            r"^FROM\s+\S+\s+AS\s+(\S+)\n(.*?)(?=^FROM |\Z)", text, flags=re.MULTILINE | re.DOTALL
        )
    }
    runtime = blocks[target] if target else text.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", runtime, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the runtime stage must run as a non-root user"
    assert "COPY --from=builder /opt/venv" in runtime


def test_the_service_image_has_a_readiness_healthcheck() -> None:
    text = (REPO_ROOT / "zadanie4" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/ready", text, flags=re.MULTILINE)
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "curl" not in instructions, "the slim image has no curl"
    assert re.search(r"^EXPOSE 8000$", text, flags=re.MULTILINE)


def test_dockerignore_keeps_data_secrets_and_the_venv_out_of_the_build_context() -> None:
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    assert "*" in lines, "allow-list style: exclude everything, then re-include what the build needs"
    included = {line[1:] for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "README.md", "shared"} <= included
    assert not included & {"data", "artifacts", ".venv", ".env", ".git"}
    assert "**/tests" in lines


# --- settings and secrets ------------------------------------------------------------------------
def test_every_variable_used_by_compose_is_documented_in_env_example() -> None:
    text = _compose_text()
    used = {match.group(1) for match in VARIABLE.finditer(text)} | {m.group(1) for m in BARE_VARIABLE.finditer(text)}
    documented = _env_example_variables()
    assert used, "compose uses no variables at all?"
    assert not used - set(documented), f"undocumented in .env.example: {sorted(used - set(documented))}"


def test_secrets_are_required_and_have_no_default_anywhere() -> None:
    secrets = set()
    for match in VARIABLE.finditer(_compose_text()):
        name, operator = match.group(1), match.group(2)
        if SECRET_NAME.search(name):
            secrets.add(name)
            assert operator == ":?", f"${{{name}}} must be written ${{{name}:?message}} (no default)"
    assert {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "RECSYS_SERVE_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD"} <= secrets
    examples = _env_example_variables()
    assert all(examples[name] == "" for name in secrets), ".env.example must not ship secret values"


def test_job_services_get_their_settings_from_the_environment() -> None:
    for name in (*JOB_SERVICES, "zadanie4"):
        env = SERVICES[name]["environment"]
        assert urlparse(env["MLFLOW_TRACKING_URI"]).netloc == "mlflow:5000"
        redis_url = urlparse(_interpolate(env["REDIS_URL"]))
        assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)
        assert redis_url.password, "Redis requires a password"
        assert env["RECSYS_DATA_DIR"] == "/data" and env["RECSYS_ARTIFACTS_DIR"] == "/artifacts"
    assert "RECSYS_SERVE_ADMIN_TOKEN" in SERVICES["zadanie4"]["environment"]


def test_redis_requires_a_password_and_keeps_an_fsynced_append_only_file() -> None:
    command = " ".join(SERVICES["redis"]["command"])
    assert "--requirepass ${REDIS_PASSWORD:?" in command
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command


def test_mlflow_runs_one_worker_without_job_runners_on_postgres() -> None:
    mlflow = SERVICES["mlflow"]
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "mlflow:5000" in mlflow["environment"]["MLFLOW_ALLOWED_HOSTS"].split(",")
    script = (REPO_ROOT / "deploy" / "mlflow" / "start-mlflow.sh").read_text(encoding="utf-8")
    for flag in ("--workers 1", "--host 0.0.0.0", "--allowed-hosts", "--artifacts-destination", "postgresql://"):
        assert flag in script
    assert "psycopg2-binary" in (REPO_ROOT / "deploy" / "mlflow" / "Dockerfile").read_text(encoding="utf-8")


def test_mlflow_start_script_uses_only_flags_that_mlflow_server_has() -> None:
    # given the server flags of the start script (the image pins the mlflow version the project's clients use)
    script = (REPO_ROOT / "deploy" / "mlflow" / "start-mlflow.sh").read_text(encoding="utf-8")
    command = script[script.index("exec mlflow server") :]
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", command))
    dockerfile = (REPO_ROOT / "deploy" / "mlflow" / "Dockerfile").read_text(encoding="utf-8")
    pinned = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert pinned, "deploy/mlflow/Dockerfile must pin MLFLOW_VERSION"
    assert pinned.group(1).split(".")[0] == importlib.metadata.version("mlflow").split(".")[0], "same major version"

    # when the installed mlflow lists its server options
    mlflow = Path(sys.executable).with_name("mlflow")
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    result = subprocess.run(
        [str(mlflow), "server", "--help"], capture_output=True, text=True, timeout=120, env=env | NO_TELEMETRY
    )

    # then every flag of the script is one of them
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"--workers", "--allowed-hosts", "--artifacts-destination"} <= flags
    unknown = sorted(flag for flag in flags if flag not in result.stdout)
    assert not unknown, f"mlflow server has no {unknown}"


@pytest.mark.parametrize(
    ("name", "mount_target"),
    [("postgres", "/var/lib/postgresql/data"), ("mlflow", "/mlartifacts"), ("redis", "/data")],
)
def test_stateful_services_keep_their_data_in_named_volumes(name: str, mount_target: str) -> None:
    volumes = load_yaml(COMPOSE_FILE)["volumes"]
    mounts = {}
    for volume in SERVICES[name].get("volumes", []):
        source, _, rest = volume.partition(":")
        mounts[rest.split(":")[0]] = source
    assert mount_target in mounts, f"{name}: nothing mounted at {mount_target}"
    assert mounts[mount_target] in volumes, f"{name}: {mount_target} must be a named volume"


# --- network exposure ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_ports_listen_on_loopback_only(name: str) -> None:
    service = SERVICES[name]
    assert service.get("network_mode") != "host"
    for port in service.get("ports", []):
        if isinstance(port, dict):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
        else:
            published = _interpolate(str(port))
            assert published.startswith("127.0.0.1:"), f"{name}: port {port} is not bound to 127.0.0.1"
            assert len(published.split(":")) == 3, f"{name}: write ports as 127.0.0.1:HOST:CONTAINER"


# --- dependencies --------------------------------------------------------------------------------
def test_depends_on_targets_exist_and_form_no_cycle() -> None:
    for name, service in SERVICES.items():
        for target, condition in _depends_on(service).items():
            assert target in SERVICES, f"{name} depends on unknown service {target}"
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
        assert name not in _closure(name), f"dependency cycle through {name}"


def test_every_service_waited_on_for_health_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        for target, condition in _depends_on(service).items():
            if condition != "service_healthy":
                continue
            target_service = SERVICES[target]
            check = target_service.get("healthcheck")
            has_check = bool(check) and not check.get("disable", False) and check.get("test") not in (["NONE"],)
            if not has_check and "build" in target_service:
                has_check = "\nHEALTHCHECK " in _dockerfile(target_service).read_text(encoding="utf-8")
            assert has_check, f"{name} waits for {target} to be healthy, but {target} has no healthcheck"


def test_services_waited_on_for_completion_are_run_once_jobs() -> None:
    for service in SERVICES.values():
        for target, condition in _depends_on(service).items():
            if condition == "service_completed_successfully":
                job = SERVICES[target]
                assert job.get("restart", "no") == "no", f"{target} is a job: restart must be 'no'"
                assert not job.get("ports"), f"{target} is a job: it publishes no ports"


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        ("zadanie1", {"mlflow", "postgres"}),
        ("zadanie2", {"redis", "zadanie1"}),
        ("zadanie3", {"mlflow", "zadanie1"}),
        ("zadanie4", {"redis", "mlflow", "zadanie2", "zadanie3"}),
        ("grafana", {"prometheus"}),
        ("locust", {"zadanie4"}),
    ],
)
def test_each_task_alone_pulls_in_what_it_needs(name: str, needs: set[str]) -> None:
    assert needs <= _closure(name), f"`docker compose up {name}` would miss {sorted(needs - _closure(name))}"


def test_the_pipeline_runs_in_order_and_the_api_starts_after_the_jobs() -> None:
    assert _depends_on(SERVICES["zadanie2"])["zadanie1"] == "service_completed_successfully"
    assert _depends_on(SERVICES["zadanie3"])["zadanie1"] == "service_completed_successfully"
    for job in ("zadanie2", "zadanie3"):
        assert _depends_on(SERVICES["zadanie4"])[job] == "service_completed_successfully"
    for dependency in ("redis", "mlflow"):
        assert _depends_on(SERVICES["zadanie4"])[dependency] == "service_healthy"


# --- commands ------------------------------------------------------------------------------------
def test_jobs_and_the_api_run_recsys_commands() -> None:
    services_with_cli = {name for name, _ in RECSYS_COMMANDS}
    assert {*JOB_SERVICES, "zadanie4"} <= services_with_cli
    assert ("zadanie4", ["serve", "--host", "0.0.0.0", "--port", "8000"]) in RECSYS_COMMANDS


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_command_steps_are_recsys_commands_or_allowed_shell_steps(name: str) -> None:
    if "build" not in SERVICES[name]:
        return  # third-party images run their own programs
    for line in _command_lines(SERVICES[name]):
        step = _interpolate(line)
        if step.startswith(("recsys ", "exec recsys ")) or step == "recsys":
            continue
        assert any(pattern.match(step) for pattern in ALLOWED_SHELL_STEPS), f"{name}: unexpected step {line!r}"


@pytest.mark.parametrize(("service", "args"), RECSYS_COMMANDS, ids=[f"{s}:{' '.join(a)}" for s, a in RECSYS_COMMANDS])
def test_service_command_is_a_real_recsys_cli_command(service: str, args: list[str]) -> None:
    # given the project's console script (click/typer handle --help before running the command, and reject
    # unknown sub-commands and options with exit code 2)
    recsys = Path(sys.executable).with_name("recsys")
    assert recsys.exists(), f"console script {recsys} is missing: install the project (pip install -e .)"
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}

    # when the command of the service is asked for its help
    result = subprocess.run(
        [str(recsys), *args, "--help"], capture_output=True, text=True, timeout=120, env=env, cwd=REPO_ROOT
    )

    # then it exists with those options
    assert result.returncode == 0, (
        f"{service}: `recsys {' '.join(args)} --help` exited {result.returncode}:\n{result.stderr[-2000:]}"
    )


@pytest.mark.parametrize(("service", "args"), RECSYS_COMMANDS, ids=[f"{s}:{' '.join(a)}" for s, a in RECSYS_COMMANDS])
def test_service_command_gives_every_required_argument(service: str, args: list[str]) -> None:
    # --help answers before arguments are checked, so `recsys registry promote --help` exits 0 although
    # `recsys registry promote` alone fails; parse the exact arguments with the CLI's own parser instead.
    # given the `recsys` command tree (typer's click commands; nothing is run)
    command = typer.main.get_command(build_app())
    tokens = list(args)
    path = ["recsys"]
    while hasattr(command, "commands") and tokens and tokens[0] in command.commands:
        path.append(tokens[0])
        command = command.commands[tokens.pop(0)]
    assert not hasattr(command, "commands"), f"{service}: `{' '.join(path)}` needs a sub-command, got {tokens}"

    # when the service's arguments are parsed, with the environment compose gives the service
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _service_environment(service).items():
            patch.setenv(key, value)
        try:
            command.make_context(" ".join(path), tokens)
            error = None
        except Exception as exc:  # typer's vendored click raises UsageError subclasses
            error = exc

    # then nothing is missing, unknown or malformed
    assert error is None, f"{service}: `{' '.join(path + tokens)}` would fail: {error}"


def test_jobs_run_the_steps_the_issue_asks_for() -> None:
    # zadanie1: events (generated or loaded), EDA, training (logged to MLflow); zadanie2: build, apply,
    # materialize, consistency check; zadanie3: validate, then promote the validated version.
    steps = {name: [" ".join(args[:2]) for service, args in RECSYS_COMMANDS if service == name] for name in SERVICES}
    assert {"data generate", "data validate", "eda", "train"} <= set(steps["zadanie1"])
    assert steps["zadanie2"] == ["features build", "features apply", "features materialize", "features check"]
    assert steps["zadanie3"] == ["registry register", "registry validate", "registry promote"]
    validated = next(args[2:] for service, args in RECSYS_COMMANDS if args[:2] == ["registry", "validate"])
    promoted = next(args[2:] for service, args in RECSYS_COMMANDS if args[:2] == ["registry", "promote"])
    assert validated == promoted, "promote the version that was just validated"
    assert "--no-mlflow" not in next(args for service, args in RECSYS_COMMANDS if args[:1] == ["train"])


def test_the_compose_gate_bar_is_the_demo_bar_of_the_makefile() -> None:
    # The generated shop's ranker does not reach the production ROC-AUC bar: compose, like `make demo`,
    # states the demo bar, or the zadanie3 job fails and the API never starts.
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    demo_bar = re.search(r"^DEMO_GATE_MIN_ROC_AUC \?= (\S+)$", makefile, flags=re.MULTILINE)
    assert demo_bar, "Makefile: DEMO_GATE_MIN_ROC_AUC"
    assert _service_environment("zadanie3")["RECSYS_REGISTRY_GATE_MIN_ROC_AUC"] == demo_bar.group(1)
    assert _env_example_variables()["RECSYS_REGISTRY_GATE_MIN_ROC_AUC"] == demo_bar.group(1)


def test_locust_runs_the_projects_locustfile_against_the_api() -> None:
    # given the locust service's command and its bind mounts
    (line,) = [line for line in _command_lines(SERVICES["locust"]) if line.startswith("exec locust")]
    tokens = shlex.split(_interpolate(line))
    mounts = {target: source for source, target in _bind_mounts(SERVICES["locust"])}

    # then the file it runs is zadanie4/evaluation/bench/locustfile.py, and it targets the API inside the compose network
    locustfile = tokens[tokens.index("-f") + 1]
    assert mounts.get(locustfile) == "./zadanie4/evaluation/bench/locustfile.py"
    assert tokens[tokens.index("--host") + 1] == "http://zadanie4:8000"
    assert "--headless" in tokens
    assert _depends_on(SERVICES["locust"])["zadanie4"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bind_mounted_files_exist_in_the_repository(name: str) -> None:
    for source, target in _bind_mounts(SERVICES[name]):
        assert (REPO_ROOT / source).exists(), f"{name}: {source} (mounted at {target}) does not exist"


# --- monitoring wiring ---------------------------------------------------------------------------
def test_prometheus_scrapes_the_service_port_that_compose_runs() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "recsys")
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    assert targets == ["zadanie4:8000"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert config["rule_files"] == ["alert_rules.yml"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in SERVICES["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]


def test_grafana_provisioning_matches_the_compose_mounts_and_the_dashboard(
    all_dashboard_panels: list[dict[str, Any]],
) -> None:
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    (datasource,) = datasources
    assert urlparse(datasource["url"]).netloc == "prometheus:9090"
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "recsys.yml")["providers"]
    mounts = dict(_bind_mounts(SERVICES["grafana"]))
    assert mounts["./deploy/grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"

    panels = [panel for panel in all_dashboard_panels if panel["type"] != "row"]
    ids = [panel["id"] for panel in all_dashboard_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert all(target["datasource"]["uid"] == datasource["uid"] for target in panel["targets"])


def test_dashboard_shows_every_view_the_issue_asks_for(all_dashboard_panels: list[dict[str, Any]]) -> None:
    titles = " | ".join(panel["title"].lower() for panel in all_dashboard_panels)
    for view in (
        "request rate",
        "p50 / p95 / p99",
        "errors",
        "degraded",
        "by reason",
        "ctr by variant",
        "overlap",
        "freshness",
        "model version",
    ):
        assert view in titles, f"no dashboard panel for {view!r}"


def _metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\brecsys_[a-z0-9_]+\b", expr))


def test_dashboard_and_alerts_query_only_metrics_the_service_exposes(
    dashboard_queries: list[Any], alert_rules: list[Any]
) -> None:
    # given every sample name ServiceMetrics exposes
    exposed = create_metrics().series_names()

    # when the metric names of every dashboard and alert expression are collected
    used = {
        (where, name)
        for where, expr in [(f"panel {q.panel!r}", q.expr) for q in dashboard_queries]
        + [(f"alert {r.name}", r.expr) for r in alert_rules]
        for name in _metric_names_in(expr)
    }

    # then each one exists (a metric renamed in zadanie4/observability/prometheus_metrics.py fails here)
    missing = sorted(f"{where}: {name}" for where, name in used if name not in exposed)
    assert not missing, "queries use metrics the service does not expose:\n" + "\n".join(missing)


def test_every_service_metric_is_on_the_dashboard(dashboard_queries: list[Any]) -> None:
    families = {family.name for family in create_metrics().registry.collect()}
    shown = " ".join(query.expr for query in dashboard_queries)
    unshown = sorted(name for name in families if not re.search(rf"\b{name}(_total|_bucket|_sum|_count)?\b", shown))
    assert not unshown, f"metrics with no dashboard panel: {unshown}"


def test_alert_rules_cover_the_issue_list(alert_rules: list[Any]) -> None:
    names = {rule.name for rule in alert_rules}
    assert {
        "RecsysHighP99Latency",
        "RecsysHigh5xxRate",
        "RecsysDegradedResponses",
        "RecsysFeedbackWriteFailures",
        "RecsysChampionCtrBelowBaseline",
    } <= names
    p99 = next(rule.expr for rule in alert_rules if rule.name == "RecsysHighP99Latency")
    assert "histogram_quantile(0.99" in p99 and "> 0.1" in p99
    assert 0.1 in create_metrics().request_latency._upper_bounds, "the 100 ms threshold must be a bucket bound"


def test_dashboard_json_parses_with_a_stable_uid_and_no_database_id() -> None:
    text = DASHBOARD_FILE.read_text(encoding="utf-8")
    dashboard = yaml.safe_load(text)  # JSON is YAML: a parse error fails here with a line number
    assert dashboard["uid"] == "recsys-service"
    assert "id" not in dashboard or dashboard["id"] is None, "provisioned dashboards must not pin a database id"


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SERVICES.items() if isinstance(s.get("build"), dict) and "target" in s["build"])
)
def test_every_build_target_is_a_stage_of_its_dockerfile(name: str) -> None:
    # given the service's build target
    target = SERVICES[name]["build"]["target"]
    # then its Dockerfile names a stage so
    stages = re.findall(
        r"^FROM\s+\S+\s+AS\s+(\S+)", _dockerfile(SERVICES[name]).read_text(encoding="utf-8"), flags=re.MULTILINE
    )
    assert target in stages, f"{name}: target {target} is not one of the stages {stages}"


def test_the_service_image_leaves_the_measuring_tools_out() -> None:
    # given the service's Dockerfile and the compose targets
    text = (REPO_ROOT / "zadanie4" / "Dockerfile").read_text(encoding="utf-8")
    assert SERVICES["zadanie4"]["build"]["target"] == "service"
    assert SERVICES["locust"]["build"]["target"] == "tools"
    # then the builder moves zadanie4/evaluation out of the venv the service stage copies, and only tools adds it back
    assert re.search(r"mv /opt/venv/lib/python3\.11/site-packages/zadanie4/evaluation /opt/evaluation", text)
    service = text.split("AS service\n", 1)[1].split("\nFROM ", 1)[0]
    assert "COPY --from=builder /opt/venv /opt/venv" in service and "/opt/evaluation" not in service
    tools = text.split("AS tools\n", 1)[1]
    assert "COPY --from=builder /opt/evaluation /opt/venv/lib/python3.11/site-packages/zadanie4/evaluation" in tools

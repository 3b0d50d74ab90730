"""The deployment files, checked without Docker: docker-compose.yml, docker/, .env.example,
config/compose.yaml, the Grafana provisioning and dashboard, and the systemd unit.

No Docker engine runs here, so these files must be right by construction: the compose file is
validated against the Compose Specification's JSON schema (vendored in docker/schema), and
everything one file says about another (paths, variables, ports, measurements) is cross-checked.
tests/integration/test_compose_topology.py runs the same topology as processes.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema_rs
import pytest
import yaml

from gateway.cli import main as gateway_main
from gateway.config import GatewayConfig, load_config
from gateway.sinks.influx_config import InfluxConfig
from gateway.sinks.mqtt_config import MqttConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
SCHEMA_DIR = ROOT / "docker" / "schema"
DASHBOARD_DIR = ROOT / "docker" / "grafana" / "dashboards"
DATASOURCES = ROOT / "docker" / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
DASHBOARD_PROVIDERS = ROOT / "docker" / "grafana" / "provisioning" / "dashboards"
UNIT_FILE = ROOT / "docker" / "systemd" / "edge-gateway.service"
UNIT_ENV_EXAMPLE = ROOT / "docker" / "systemd" / "gateway.env.example"

PUBLISHED = {("gateway", 8000), ("grafana", 3000), ("mosquitto", 1883)}
"""(service, container port): the page and API, Grafana, the broker. Nothing else."""
SECRET = re.compile(r"PASSWORD|TOKEN|SECRET")

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# ---- helpers, shared with tests/integration/test_compose_topology.py --------------------------


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def read_env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """``NAME=value`` lines of a .env file; with ``commented``, also ``# NAME=value`` ones."""
    pattern = re.compile(r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
    found = {}
    for line in path.read_text().splitlines():
        match = pattern.match(line.strip())
        if match and (commented or match.group(1) is None):
            found[match.group(2)] = match.group(3)
    return found


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """What Docker Compose makes of ``text`` with ``env`` (its .env): ``$$`` is a literal ``$``;
    a missing ``${NAME:?message}`` is an error, as ``docker compose`` refuses to start."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        unset = value is None or (value == "" and operator is not None and operator[0] == ":")
        if not unset:
            assert value is not None
            return value
        if operator is not None and operator.endswith("?"):
            raise KeyError(f"{name}: {argument}")
        return argument if operator is not None else ""

    parts = text.split("$$")
    return "$".join(_VARIABLE.sub(replace, part) for part in parts)


def variables(text: str) -> dict[str, str | None]:
    """The ``${...}`` references in ``text``: name → default (None: no default)."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(text.replace("$$", "")):
        default = match.group(3) if match.group(2) in (":-", "-") else None
        found.setdefault(match.group(1), default)
    return found


def service_environment(service: str, dotenv: Mapping[str, str]) -> dict[str, str]:
    """The environment compose gives ``service``'s container, for this .env."""
    environment = load_compose()["services"][service].get("environment", {})
    return {name: interpolate(str(value), dotenv) for name, value in environment.items()}


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def bind(self) -> bool:
        return self.source.startswith(("./", "../", "/"))


def mounts(service: dict[str, Any]) -> list[Mount]:
    found = []
    for entry in service.get("volumes", []):
        source, target, *mode = str(entry).split(":")
        found.append(Mount(source, target, mode == ["ro"]))
    return found


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a bind mount of ``service`` shows at ``container_path``."""
    path = PurePosixPath(container_path)
    for mount in mounts(service):
        if mount.bind and path.is_relative_to(mount.target):
            return ROOT / mount.source / path.relative_to(mount.target)
    raise AssertionError(f"{container_path} is not in a bind mount of {service}")


def command_option(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    arguments: str


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with continuation lines joined, each with the stage it belongs to."""
    text = re.sub(r"\\\n", " ", path.read_text())
    instructions = []
    stage = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else words[0]
        instructions.append(Instruction(stage, keyword, arguments.strip()))
    return instructions


def stage_chain(stage: str, instructions: list[Instruction]) -> list[str]:
    """``stage`` and the stages it is built FROM, nearest first."""
    froms = {i.stage: i.arguments.split()[0] for i in instructions if i.keyword == "FROM"}
    chain = [stage]
    while froms.get(chain[-1]) in froms:
        chain.append(froms[chain[-1]])
    return chain


def stage_instructions(stage: str, keyword: str) -> list[str]:
    instructions = dockerfile_instructions()
    chain = stage_chain(stage, instructions)
    return [i.arguments for i in instructions if i.stage in chain and i.keyword == keyword]


def env_for_config(example: bool = False) -> dict[str, str]:
    """The gateway container's environment with the .env that docker/make-env.sh makes (new
    random secrets), or with the values of .env.example as they are."""
    if example:
        return service_environment("gateway", read_env_file(ENV_EXAMPLE))
    with tempfile.TemporaryDirectory() as workdir:
        made = Path(workdir) / ".env"
        subprocess.run(["sh", str(ROOT / "docker" / "make-env.sh"), str(made)], check=True)
        return service_environment("gateway", read_env_file(made))


def compose_config_path() -> Path:
    gateway = load_compose()["services"]["gateway"]
    return host_path(gateway, command_option(gateway["command"], "--config"))


def load_compose_config(monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    for name, value in env_for_config().items():
        monkeypatch.setenv(name, value)
    return load_config(compose_config_path())


def written_layout(config: GatewayConfig) -> tuple[dict[str, set[str]], set[str]]:
    """What the InfluxDB sink writes for ``config`` (gateway/sinks/line_protocol.py): fields
    (tag names) per measurement, and the tag keys (gateway, device and the labels)."""
    influx = config.sinks["tsdb"]
    assert isinstance(influx, InfluxConfig)
    fields: dict[str, set[str]] = {}
    tag_keys = {"gateway", "device"}
    for device in config.devices:
        measurement = config.measurement_of(device) or influx.measurement
        names = {tag.name for group in config.groups_of(device) for tag in group.tags}
        fields.setdefault(measurement, set()).update(names)
        tag_keys.update(name for name, value in device.labels.items() if value)
    return fields, tag_keys


@dataclass(frozen=True)
class FluxQuery:
    where: str
    text: str

    @property
    def measurements(self) -> set[str]:
        return set(re.findall(r'r\._measurement\s*==\s*"([^"]+)"', self.text))

    @property
    def fields(self) -> set[str]:
        return set(re.findall(r'r\._field\s*==\s*"([^"]+)"', self.text))

    @property
    def columns(self) -> set[str]:
        """Columns named as ``r.name``, ``tag: "name"`` or in ``columns: [...]`` lists."""
        names = set(re.findall(r"\br\.([A-Za-z_][A-Za-z0-9_]*)", self.text))
        names.update(re.findall(r'\b(?:tag|column):\s*"([^"]+)"', self.text))
        for listed in re.findall(r"columns:\s*\[([^\]]*)\]", self.text):
            names.update(re.findall(r'"([^"]+)"', listed))
        return names


def dashboards() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, json.loads(path.read_text())) for path in sorted(DASHBOARD_DIR.glob("*.json"))]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[FluxQuery]:
    queries = []
    for path, dashboard in dashboards():
        for variable in dashboard["templating"]["list"]:
            queries.append(FluxQuery(f"{path.name} ${variable['name']}", variable["query"]))
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                queries.append(FluxQuery(f"{path.name} {panel['title']!r}", target["query"]))
    return queries


def dashboard_series() -> set[tuple[str, str]]:
    """(measurement, field) pairs the dashboards plot."""
    return {
        (measurement, field)
        for query in dashboard_queries()
        for measurement in query.measurements
        for field in query.fields
    }


def datasource_uid() -> str:
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert len(sources) == 1
    uid: str = sources[0]["uid"]
    return uid


def unit_settings(path: Path = UNIT_FILE) -> dict[str, list[str]]:
    """``Section.Key`` → values, in order (systemd allows a key several times)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


# ---- the compose file ----------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert {"compose-spec.json", "LICENSE", "NOTICE", "README.md"} <= {
        p.name for p in SCHEMA_DIR.iterdir()
    }
    schema = json.loads((SCHEMA_DIR / "compose-spec.json").read_text())
    assert schema["title"] == "Compose Specification"
    # Compose durations are Go's ("10s"), not the ISO 8601 the schema's "duration" format means.
    validator = jsonschema_rs.validator_for(schema, validate_formats=False)
    compose = load_compose()
    assert [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(compose)] == []
    compose["services"]["gateway"]["healthcheck"] = {"test": ["CMD", "true"], "every": "5s"}
    assert not validator.is_valid(compose), "the validator must catch an unknown key"


def test_every_service_runs_an_image_and_restarts() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        assert "image" in service, name
        one_shot = service.get("restart") == "no"
        assert one_shot or service.get("restart") == "unless-stopped", name


def test_build_contexts_dockerfiles_and_targets_exist() -> None:
    stages = {i.stage for i in dockerfile_instructions() if i.keyword == "FROM"}
    built = {
        name: service["build"]
        for name, service in load_compose()["services"].items()
        if "build" in service
    }
    assert set(built) == {"gateway", "modbus-sim", "opcua-sim", "s7-sim"}
    for name, build in built.items():
        context = ROOT / build["context"]
        assert context.is_dir(), name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["target"] in stages, name


def test_the_build_context_lets_in_only_what_the_dockerfile_copies() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "an allow list: everything else (.env, .venv, data) stays out"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied: set[str] = set()
    for arguments in (i.arguments for i in dockerfile_instructions() if i.keyword == "COPY"):
        words = arguments.split()
        if any(word.startswith("--from") for word in words):
            continue
        copied.update(word.rstrip("/") for word in words[:-1])
    assert copied == allowed
    assert all((ROOT / name).exists() for name in copied)


def test_mounted_files_exist_and_named_volumes_are_declared() -> None:
    compose = load_compose()
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in mounts(service):
            if mount.bind:
                assert (ROOT / mount.source).exists(), f"{name}: {mount.source}"
                assert mount.read_only, f"{name}: {mount.source} should be mounted :ro"
            else:
                assert mount.source in declared, f"{name}: volume {mount.source}"
                used.add(mount.source)
    assert used == declared


def test_the_gateway_runs_config_compose_yaml_with_its_data_in_a_named_volume() -> None:
    gateway = load_compose()["services"]["gateway"]
    assert compose_config_path() == ROOT / "config" / "compose.yaml"
    data_dir = gateway["environment"]["GATEWAY_DATA_DIR"]
    named = {m.target: m.source for m in mounts(gateway) if not m.bind}
    assert data_dir in named
    assert stage_instructions("gateway", "VOLUME") == [f'["{data_dir}"]']
    assert variables((ROOT / "config" / "compose.yaml").read_text())["GATEWAY_DATA_DIR"] == (
        data_dir
    )


def test_published_ports_are_only_the_page_grafana_and_the_broker() -> None:
    published = set()
    for name, service in load_compose()["services"].items():
        assert "network_mode" not in service, name
        for port in service.get("ports", []):
            container = str(port).rsplit(":", 1)[-1].split("/")[0]
            published.add((name, int(container)))
    assert published == PUBLISHED


def test_services_others_wait_for_have_health_checks() -> None:
    services = load_compose()["services"]
    waited_on = set()
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            if condition == "service_healthy":
                waited_on.add(dependency)
            else:
                assert condition == "service_completed_successfully", (name, dependency)
                assert services[dependency]["restart"] == "no", "a one-shot service"
    assert waited_on == {"mosquitto", "influxdb"}
    for name, service in services.items():
        if service.get("restart") == "no":
            continue
        own = "healthcheck" in service
        from_image = "build" in service and stage_instructions(
            service["build"]["target"], "HEALTHCHECK"
        )
        assert own or from_image, f"{name} has no health check"


def test_long_running_services_keep_their_logs_bounded() -> None:
    for name, service in load_compose()["services"].items():
        assert service["logging"]["options"]["max-size"], name


def test_the_gateway_image_checks_readyz_with_python_as_a_non_root_user() -> None:
    (check,) = stage_instructions("gateway", "HEALTHCHECK")
    assert "/readyz" in check
    assert re.search(r'CMD \["python", "-c"', check), "slim has no curl"
    (port,) = re.findall(r"GATEWAY_API_PORT', '(\d+)'", check)
    assert stage_instructions("gateway", "EXPOSE") == [port]
    config = yaml.safe_load((ROOT / "config" / "compose.yaml").read_text())
    assert config["api"]["port"] == f"${{GATEWAY_API_PORT:-{port}}}"
    assert config["api"]["host"] == "${GATEWAY_API_HOST:-0.0.0.0}"
    for target in ("gateway", "simulator"):
        (user,) = stage_instructions(target, "USER")
        assert user not in ("root", "0"), target


def test_dockerfile_installs_the_package_as_the_readme_does() -> None:
    command = "pip install -c constraints.txt ."
    assert command in (ROOT / "README.md").read_text()
    instructions = dockerfile_instructions()
    runs = [i for i in instructions if i.keyword == "RUN" and "pip install" in i.arguments]
    assert [i.arguments for i in runs] == [command]
    assert runs[0].stage == "build"
    froms = [i.arguments for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 3, "multi-stage: build, runtime, targets"
    base = next(i.arguments for i in instructions if i.keyword == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base)
    copied_venv = stage_instructions("gateway", "COPY")
    assert any(arguments.startswith("--from=build") for arguments in copied_venv)


def test_simulator_commands_listen_on_every_interface_of_their_container() -> None:
    services = load_compose()["services"]
    for name, module, port in (
        ("modbus-sim", "simulators.modbus", "5020"),
        ("opcua-sim", "simulators.opcua", "4840"),
    ):
        command = services[name]["command"]
        assert command[0] == module
        assert command_option(command, "--host") == "0.0.0.0"
        assert command_option(command, "--port") == port
        assert f"'127.0.0.1', {port}" in " ".join(services[name]["healthcheck"]["test"])
        assert services[name]["profiles"] == ["simulators"]
    assert stage_instructions("simulator", "ENTRYPOINT") == ['["python", "-m"]']


# ---- variables: config/compose.yaml, docker-compose.yml, .env.example ------------------------


def test_every_variable_of_the_gateway_config_is_set_by_compose_and_listed() -> None:
    config_vars = variables((ROOT / "config" / "compose.yaml").read_text())
    environment = load_compose()["services"]["gateway"]["environment"]
    listed = read_env_file(ENV_EXAMPLE, commented=True)
    for name, config_default in config_vars.items():
        assert name in environment, f"compose does not set {name} for the gateway"
        value = str(environment[name])
        from_env = variables(value)
        if not from_env:
            continue  # fixed by the container's layout (GATEWAY_DATA_DIR), not a setting
        assert list(from_env) == [name], f"{name}: {value}"
        assert name in listed, f"{name} is not in .env.example"
        compose_default = from_env[name]
        if compose_default is not None and config_default:
            assert compose_default == config_default, name
            assert listed[name] == config_default, name


def test_env_example_lists_every_variable_compose_reads() -> None:
    listed = read_env_file(ENV_EXAMPLE, commented=True)
    used = variables(COMPOSE_FILE.read_text())
    assert set(used) <= set(listed)
    required = {n for n, v in variables(COMPOSE_FILE.read_text()).items() if v is None}
    assert required <= set(read_env_file(ENV_EXAMPLE)), "required ones are not commented out"
    assert read_env_file(ENV_EXAMPLE)["COMPOSE_PROFILES"] == "simulators"


def test_secrets_are_required_and_none_is_committed() -> None:
    text = COMPOSE_FILE.read_text()
    for match in _VARIABLE.finditer(text):
        if SECRET.search(match.group(1)):
            assert match.group(2) == ":?", f"compose must refuse to start without {match[0]}"
    for path in (ENV_EXAMPLE, UNIT_ENV_EXAMPLE):
        for name, value in read_env_file(path).items():
            if SECRET.search(name):
                assert value.startswith("change-me"), f"{path.name}: {name}"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


def test_compose_config_passes_check_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env_for_config().items():
        monkeypatch.setenv(name, value)
    assert gateway_main(["check-config", str(compose_config_path())]) == 0
    assert "5 device(s)" in capsys.readouterr().out
    config = load_compose_config(monkeypatch)
    mqtt, influx = config.sinks["plant"], config.sinks["tsdb"]
    assert isinstance(mqtt, MqttConfig)
    assert isinstance(influx, InfluxConfig)
    assert (mqtt.host, mqtt.port) == ("mosquitto", 1883)
    assert influx.url == "http://influxdb:8086"
    assert mqtt.password is not None
    assert len(mqtt.password.get_secret_value()) == 32  # made by make-env.sh
    assert {t.role for t in config.api.tokens} == {"admin", "operator", "viewer"}


@pytest.mark.parametrize("unset", [False, True], ids=["example-values", "unset"])
def test_compose_config_fails_check_config_with_the_example_or_no_admin_token(
    unset: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env_for_config(example=True).items():
        monkeypatch.setenv(name, value)
    if unset:
        monkeypatch.delenv("GATEWAY_ADMIN_TOKEN")
    assert gateway_main(["check-config", str(compose_config_path())]) != 0
    error = capsys.readouterr().err
    if unset:
        assert "api.tokens[0].token: environment variable GATEWAY_ADMIN_TOKEN is not set" in error
    else:
        assert "api.tokens[0]: token: this is an example value from the repository" in error


def test_the_compose_config_reads_the_simulator_services() -> None:
    compose = load_compose()
    environment = compose["services"]["gateway"]["environment"]
    simulators = (("MODBUS_SIM", "modbus-sim"), ("OPCUA_SIM", "opcua-sim"), ("S7_SIM", "s7-sim"))
    for prefix, service in simulators:
        host = variables(environment[f"{prefix}_HOST"])[f"{prefix}_HOST"]
        port = variables(environment[f"{prefix}_PORT"])[f"{prefix}_PORT"]
        assert host == service
        assert port == command_option(compose["services"][service]["command"], "--port")


# ---- Mosquitto ----------------------------------------------------------------------------


def test_mosquitto_reads_its_auth_files_from_the_volume_the_init_service_writes() -> None:
    services = load_compose()["services"]
    conf_path = host_path(services["mosquitto"], "/mosquitto/config/mosquitto.conf")
    conf = dict(
        line.split(" ", 1)
        for line in conf_path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["allow_anonymous"] == "false"
    volumes = {m.source: m.target for m in mounts(services["mosquitto"]) if not m.bind}
    auth_dir = PurePosixPath(volumes["mosquitto-auth"])
    assert PurePosixPath(conf["password_file"]).parent == auth_dir
    assert PurePosixPath(conf["acl_file"]).parent == auth_dir
    assert PurePosixPath(conf["persistence_location"]) == PurePosixPath(volumes["mosquitto-data"])
    init = services["mosquitto-init"]
    assert {m.source: m.target for m in mounts(init) if not m.bind} == {
        "mosquitto-auth": str(auth_dir)
    }
    script = host_path(init, init["entrypoint"][-1]).read_text()
    assert f'"${{MOSQUITTO_AUTH_DIR:-{auth_dir}}}"' in script
    assert '"$dir/passwords"' in script
    assert '"$dir/acl"' in script


def test_mosquitto_health_check_logs_in_with_the_reader_account() -> None:
    mosquitto = load_compose()["services"]["mosquitto"]
    kind, command = mosquitto["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    words = shlex.split(interpolate(command, {}))
    assert words[0] == "mosquitto_sub"
    assert command_option(words, "-u") == "$MQTT_READER_USERNAME"
    assert command_option(words, "-p") == "1883"
    assert set(mosquitto["environment"]) == {"MQTT_READER_USERNAME", "MQTT_READER_PASSWORD"}


# ---- InfluxDB and Grafana -----------------------------------------------------------------


def test_influxdb_is_set_up_with_what_the_gateway_and_grafana_use() -> None:
    dotenv = read_env_file(ENV_EXAMPLE)
    influx = service_environment("influxdb", dotenv)
    gateway = service_environment("gateway", dotenv)
    grafana = service_environment("grafana", dotenv)
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert len(influx["DOCKER_INFLUXDB_INIT_PASSWORD"]) >= 8, "influx setup refuses shorter"
    for init, used in (
        ("ORG", "INFLUX_ORG"),
        ("BUCKET", "INFLUX_BUCKET"),
        ("ADMIN_TOKEN", "INFLUX_TOKEN"),
    ):
        assert influx[f"DOCKER_INFLUXDB_INIT_{init}"] == gateway[used] == grafana[used]
    assert gateway["INFLUX_URL"] == grafana["INFLUX_URL"] == "http://influxdb:8086"


def test_grafana_data_source_is_influxdb_flux_with_the_token_from_the_environment() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "Flux"
    assert source["secureJsonData"]["token"] == "${INFLUX_TOKEN}"
    grafana = load_compose()["services"]["grafana"]
    assert set(variables(DATASOURCES.read_text())) <= set(grafana["environment"])
    assert host_path(grafana, "/etc/grafana/provisioning/datasources") == DATASOURCES.parent


def test_grafana_loads_the_dashboards_from_a_mounted_directory() -> None:
    grafana = load_compose()["services"]["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning/dashboards") == DASHBOARD_PROVIDERS
    (provider,) = yaml.safe_load((DASHBOARD_PROVIDERS / "edge-gateway.yaml").read_text())[
        "providers"
    ]
    assert host_path(grafana, provider["options"]["path"]) == DASHBOARD_DIR
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home).is_file()
    assert len(dashboards()) == 1


def test_dashboard_panels_use_the_provisioned_data_source() -> None:
    uid = datasource_uid()
    for path, dashboard in dashboards():
        assert dashboard["uid"]
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] == uid, path.name
        data_panels = [p for p in panels(dashboard) if p["type"] != "row"]
        assert data_panels, path.name
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), "panel ids are unique"
        for panel in data_panels:
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid, panel["title"]


def test_dashboard_queries_name_measurements_fields_and_tags_the_gateway_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields, tag_keys = written_layout(load_compose_config(monkeypatch))
    queries = dashboard_queries()
    shown = set()
    for query in queries:
        assert "v.defaultBucket" in query.text, query.where
        assert query.measurements <= set(fields), query.where
        for measurement in query.measurements:
            assert query.fields <= fields[measurement], (query.where, measurement)
        tags = {c for c in query.columns if not c.startswith("_")}
        assert tags <= tag_keys, query.where
        shown |= query.measurements
    assert shown == set(fields), "every measurement the gateway writes is on the dashboard"
    assert {("filling", "temperature"), ("line", "speed")} <= dashboard_series()


# ---- bare metal: the systemd unit -----------------------------------------------------------


def test_systemd_unit_runs_the_gateway_as_its_own_user_with_state_and_secrets() -> None:
    unit = unit_settings()
    one = {key: values[-1] for key, values in unit.items()}
    assert one["Service.User"] == one["Service.Group"] == "edge-gateway"
    assert one["Service.StateDirectory"] == "edge-gateway"
    state = f"/var/lib/{one['Service.StateDirectory']}"
    assert one["Service.WorkingDirectory"] == state
    assert one["Service.Environment"] == f"GATEWAY_DATA_DIR={state}"
    assert one["Service.EnvironmentFile"] == "/etc/edge-gateway/gateway.env"
    assert one["Service.Restart"] == "on-failure"
    run = one["Service.ExecStart"].split()
    check = one["Service.ExecStartPre"].split()
    assert run[0] == check[0]
    assert run[0].startswith("/opt/edge-gateway/venv/bin/")
    assert run[1:4] == ["run", "--config", "/etc/edge-gateway/gateway.yaml"]
    assert check[1:] == ["check-config", "/etc/edge-gateway/gateway.yaml"]
    assert int(one["Service.TimeoutStopSec"]) > 10, "longer than runtime.shutdown_timeout"
    for key, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
    ):
        assert one[f"Service.{key}"] == value, key
    assert "PrivateDevices" not in " ".join(unit), "it would hide the serial ports"
    assert one["Install.WantedBy"] == "multi-user.target"


def test_systemd_environment_file_example_sets_every_variable_of_the_config() -> None:
    listed = read_env_file(UNIT_ENV_EXAMPLE)
    config_vars = variables((ROOT / "config" / "compose.yaml").read_text())
    assert set(config_vars) - set(listed) == {"GATEWAY_DATA_DIR"}, "the unit sets that one"


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """The unit with its ExecStart binary pointed at this venv's ``gateway`` (verify refuses
    a missing executable; /opt/edge-gateway does not exist here)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    gateway = Path(sys.executable).parent / "gateway"
    if not gateway.exists():
        pytest.skip(f"{gateway} is not installed (pip install -e .)")
    copy = tmp_path / UNIT_FILE.name
    copy.write_text(
        UNIT_FILE.read_text().replace("/opt/edge-gateway/venv/bin/gateway", str(gateway))
    )
    return copy


def test_systemd_analyze_verifies_the_unit(verifiable_unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(verifiable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_systemd_analyze_rates_the_unit_hardened(verifiable_unit: Path) -> None:
    # Exposure 0-10 is rated 0-100 here; 2.5 is in systemd's "OK" band (this unit: 2.0).
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            "--threshold=25",
            "--no-pager",
            str(verifiable_unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# ---- the README ---------------------------------------------------------------------------


def test_readme_deploy_section_names_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Deploy")
    end = readme.index("\n## Tests and benchmarks")
    assert start < end
    section = readme[start:end]
    for needed in ("docker compose up", "sh docker/make-env.sh", "systemctl", "journalctl"):
        assert needed in section, needed
    paths = set(re.findall(r"\b((?:docker|config)/[\w./-]*\w)", section))
    assert "docker/systemd/edge-gateway.service" in paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []

"""The deployment files (no container engine or cluster runs here, so they are read, not run):
the image (dependency layer before the sources, a numeric non-root user, pinned bases, a health
check on /live, nothing written outside /tmp), compose with Redis and a secret file, and the
Kubernetes example checked against what the gateway actually reads and how it shuts down."""

from __future__ import annotations

import ipaddress
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from api_gateway.config.loader import SECRET_VARIABLES, load
from api_gateway.config.settings import ConfigError, GatewayConfig
from api_gateway.supervisor import STOP_EXTRA_S

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
Instruction = tuple[str, str]
# What each secret file holds in the manifest check: a value the gateway accepts.
SECRET_VALUES = {
    "JWT_SECRET": "s" * 48,
    "REDIS_URL": "redis://:hunter2hunter2@redis:6379/0",
    "ADMIN_TOKEN": "t" * 40,
    "API_KEY_PEPPER": "p" * 48,
    "INTERNAL_HMAC_SECRET": "h" * 48,
}


# ---- the Dockerfile ---------------------------------------------------------------------------


def instructions() -> list[Instruction]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def stages() -> list[list[Instruction]]:
    """The build stages in order, each from its FROM on."""
    found: list[list[Instruction]] = []
    for name, value in instructions():
        if name == "FROM":
            found.append([])
        assert found, f"{name} before the first FROM"
        found[-1].append((name, value))
    return found


def index_of(steps: list[Instruction], name: str, needle: str) -> int:
    matches = [i for i, (n, value) in enumerate(steps) if n == name and needle in value]
    assert matches, f"no {name} with {needle!r}"
    return matches[0]


def environment(steps: list[Instruction]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for name, value in steps:
        if name == "ENV":
            for item in shlex.split(value):
                key, _, setting = item.partition("=")
                variables[key] = setting
    return variables


def image_user() -> tuple[int, int]:
    users = [value for name, value in stages()[-1] if name == "USER"]
    assert users, "the image sets no USER: it would run as root"
    match = re.fullmatch(r"(\d+):(\d+)", users[-1])
    assert match, f"USER {users[-1]!r} must be numeric uid:gid (runAsNonRoot cannot check a name)"
    return int(match[1]), int(match[2])


def test_the_image_runs_the_gateway_as_a_numeric_non_root_user() -> None:
    uid, gid = image_user()
    assert uid != 0 and gid != 0
    runs = " ".join(value for name, value in stages()[-1] if name == "RUN")
    assert f"--uid {uid}" in runs and f"--gid {gid}" in runs  # the user exists with those ids
    assert any(name == "CMD" and "api-gateway" in value for name, value in stages()[-1])


def test_the_image_exposes_both_ports_and_stops_on_sigterm() -> None:
    final = stages()[-1]
    exposed = {port for name, value in final if name == "EXPOSE" for port in value.split()}
    assert exposed == {"3000", "9901"}
    assert [value for name, value in final if name == "STOPSIGNAL"] == ["SIGTERM"]


def test_the_image_checks_health_on_live() -> None:
    [check] = [value for name, value in instructions() if name == "HEALTHCHECK"]
    assert "/live" in check
    assert "CMD [" in check  # exec form: no shell needed


def test_every_base_image_is_an_exact_version_and_both_stages_share_it() -> None:
    bases = [value.split()[0] for name, value in instructions() if name == "FROM"]
    assert len(bases) == 2
    versions = set()
    for base in bases:
        match = re.fullmatch(
            r"python:(3\.11\.\d+)-(?:slim-)?(bookworm|trixie)(@sha256:[0-9a-f]{64})?", base
        )
        assert match, f"{base} is not pinned to an exact Python and Debian release"
        versions.add(match[1])
    assert len(versions) == 1, f"build and run stages on different Pythons: {versions}"


def test_dependencies_are_installed_before_the_sources_are_copied() -> None:
    build, final = stages()
    dependencies = index_of(build, "RUN", "-r requirements.txt")
    decided_by = index_of(build, "COPY", "pyproject.toml")
    assert decided_by < dependencies < index_of(build, "COPY", "src")
    copied_before = " ".join(v for n, v in build[:dependencies] if n == "COPY").split()
    assert set(copied_before) - {"./"} == {"pyproject.toml", "constraints.txt"}
    assert "-c constraints.txt" in build[dependencies][1]
    assert index_of(build, "COPY", "src") < index_of(build, "RUN", "--no-deps --wheel-dir")
    # The run stage installs wheels only (never builds), dependencies first, and copies no source.
    installs = [value for name, value in final if name == "RUN" and "pip install" in value]
    assert len(installs) == 2 and all("--no-index" in value for value in installs)
    assert "requirements.txt" in installs[0] and "/wheels/app/" in installs[1]
    assert not [value for name, value in final if name in ("COPY", "ADD")]


def test_the_build_backend_is_in_the_build_stage() -> None:
    """If pyproject names an in-tree build backend, its directory is copied before the wheel."""
    build = stages()[0]
    system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    copied = " ".join(value for name, value in build if name == "COPY")
    for path in system.get("backend-path", []):
        top = PurePosixPath(path).parts[0]
        assert f"{top} " in copied or copied.endswith(top), f"backend-path {path} is not copied"
    # setup.py makes it a platform wheel holding the compiled build; without it the image
    # would run interpreted.
    for name in ("setup.py", "MANIFEST.in"):
        if (ROOT / name).exists():
            assert name in copied.split(), f"{name} is not copied into the build stage"


def test_nothing_is_written_outside_tmp_and_no_bytecode() -> None:
    final = stages()[-1]
    variables = environment(final)
    assert variables["PYTHONDONTWRITEBYTECODE"] == "1"
    assert variables["TMPDIR"] == "/tmp"
    volumes = [value for name, value in final if name == "VOLUME"]
    assert volumes == ['["/tmp"]']


def test_the_image_holds_no_secret_and_follows_the_usual_lint_rules() -> None:
    steps = instructions()
    for name, value in steps:
        if name in ("ENV", "ARG"):
            for word in re.findall(r"[A-Z_]+(?==)", value):
                assert not re.search("SECRET|TOKEN|PASSWORD|PEPPER|KEY", word), word
        assert name != "ADD", "COPY, not ADD (no remote fetches, no archive magic)"
        if name == "FROM":
            assert ":" in value.split()[0] and not value.split()[0].endswith(":latest")
        assert not (name == "RUN" and re.search(r"\bsudo\b|apt-get upgrade|curl .*\| *sh", value))
        if name == "COPY":
            assert "secrets" not in value
        if name == "WORKDIR":
            assert value.startswith("/")
    for stage in stages():
        variables = environment(stage)
        for name, value in stage:  # pip keeps no cache in a layer
            if name == "RUN" and "pip " in value:
                assert variables.get("PIP_NO_CACHE_DIR") == "1" or "--no-cache-dir" in value
    [cmd] = [value for name, value in steps if name == "CMD"]
    assert cmd.startswith("["), "CMD in exec form: the supervisor is PID 1 and gets SIGTERM"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"secrets", ".venv", ".git", "src/api_gateway/_compiled"} <= ignored


# ---- compose ----------------------------------------------------------------------------------


def test_compose_runs_the_gateway_with_redis_and_a_secret_file() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    gateway = compose["services"]["api-gateway"]
    assert gateway["container_name"] == "api-gateway"
    assert "3000:3000" in gateway["ports"]
    environment = gateway["environment"]
    assert environment["REDIS_URL"].startswith("redis://redis:")
    assert environment["JWT_SECRET_FILE"] == "/run/secrets/jwt_secret"
    assert "JWT_SECRET" in SECRET_VARIABLES
    assert "redis" in compose["services"]
    assert gateway["secrets"] == ["jwt_secret"]
    assert gateway["read_only"] is True
    assert "/tmp" in gateway["tmpfs"]


# ---- Kubernetes -------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [
        d
        for d in manifests()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    return found


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    [found] = pod()["containers"]
    assert isinstance(found, dict)
    return found


def ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container()["ports"]}


def env() -> dict[str, str]:
    values = {}
    for variable in container()["env"]:
        assert set(variable) == {"name", "value"}, f"{variable['name']}: use a value or a file"
        values[variable["name"]] = str(variable["value"])
    return values


def mounted_secret_files() -> Iterator[str]:
    volumes = {volume["name"]: volume for volume in pod()["volumes"]}
    for mount in container()["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is not None:
            assert mount.get("readOnly") is True
            for item in secret["items"]:
                yield str(PurePosixPath(mount["mountPath"]) / item["path"])


def secret_files(directory: Path) -> dict[str, str]:
    """The manifest's environment, each secret file written under ``directory``."""
    variables = dict(env())
    for name, path in env().items():
        if name.endswith("_FILE"):
            local = directory / PurePosixPath(path).name
            local.write_text(SECRET_VALUES[name.removesuffix("_FILE")] + "\n")
            variables[name] = str(local)
    return variables


def loaded(variables: Mapping[str, str]) -> GatewayConfig | str:
    try:
        return load(env=variables)
    except ConfigError as exc:
        return f"refused: {exc}"


def test_the_manifests_set_only_variables_the_gateway_reads(tmp_path: Path) -> None:
    """The whole environment loads; and each variable, taken away, changes the configuration
    (or makes it invalid): a misspelt or ignored name would change nothing."""
    variables = secret_files(tmp_path)
    config = loaded(variables)
    assert isinstance(config, GatewayConfig), config
    for name in variables:
        without = {key: value for key, value in variables.items() if key != name}
        assert loaded(without) != config, f"{name} is not read by the gateway (or is its default)"


def test_secrets_come_from_mounted_files_never_from_values() -> None:
    variables = env()
    assert not set(variables) & set(SECRET_VARIABLES), "secret values in the pod spec"
    files = {name: path for name, path in variables.items() if name.endswith("_FILE")}
    assert {"JWT_SECRET_FILE", "REDIS_URL_FILE", "ADMIN_TOKEN_FILE"} <= set(files)
    mounted = set(mounted_secret_files())
    for name, path in files.items():
        assert name.removesuffix("_FILE") in SECRET_VARIABLES, name
        assert path in mounted, f"{name}={path} is not a mounted secret file"


def test_probes_ask_ready_and_live_on_the_traffic_port() -> None:
    c = container()
    assert ports() == {"http": 3000, "admin": 9901}
    assert int(env().get("PORT", "3000")) == 3000
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/live")):
        http = c[probe]["httpGet"]
        assert http["path"] == path
        assert ports().get(http["port"], http["port"]) == 3000
    assert c["startupProbe"]["httpGet"]["path"] == "/live"


def test_the_grace_period_covers_the_pre_stop_and_the_whole_drain(tmp_path: Path) -> None:
    config = loaded(secret_files(tmp_path))
    assert isinstance(config, GatewayConfig)
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 3  # endpoints take a moment to leave every kube-proxy and ingress
    drain_s = config.server.shutdown_grace_ms / 1000
    # The supervisor kills a worker still draining STOP_EXTRA_S after the grace; Kubernetes
    # must not kill the supervisor before that.
    assert pod()["terminationGracePeriodSeconds"] > pre_stop + drain_s + STOP_EXTRA_S


def test_the_pod_runs_as_the_image_user_with_nothing_it_does_not_need() -> None:
    security = {**pod()["securityContext"], **container()["securityContext"]}
    uid, gid = image_user()
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod()["automountServiceAccountToken"] is False
    assert pod()["enableServiceLinks"] is False  # no FOO_PORT=tcp://... in the environment


def test_tmp_the_only_writable_path_is_an_empty_dir() -> None:
    volumes = {volume["name"]: volume for volume in pod()["volumes"]}
    tmpdir = env().get("TMPDIR", environment(stages()[-1])["TMPDIR"])
    [mount] = [m for m in container()["volumeMounts"] if m["mountPath"] == tmpdir]
    assert "emptyDir" in volumes[mount["name"]]
    assert volumes[mount["name"]]["emptyDir"]["sizeLimit"]


def quantity(text: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def test_resources_are_requested_and_bounded_as_the_readme_reasons() -> None:
    resources = container()["resources"]
    for kind in ("cpu", "memory"):
        assert 0 < quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])
    # One event loop per worker: the CPU limit is the worker count, so no worker is throttled
    # below a core it could use, and none is granted a core it cannot.
    assert quantity(resources["limits"]["cpu"]) == int(env()["GATEWAY_WORKERS"])
    # The benchmark's peak RSS for two workers (131 MiB) fits the request.
    assert quantity(resources["requests"]["memory"]) >= 131 * 2**20


def test_the_admin_listener_is_guarded_and_not_public() -> None:
    variables = env()
    host = variables.get("ADMIN_HOST", "127.0.0.1")
    if not ipaddress.ip_address(host).is_loopback:
        assert "ADMIN_TOKEN_FILE" in variables
    public = one("Service", "api-gateway")["spec"]
    assert public["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in public["ports"]] == [(3000, "http")]
    admin = one("Service", "api-gateway-admin")["spec"]
    assert admin.get("type", "ClusterIP") == "ClusterIP"
    assert [p["targetPort"] for p in admin["ports"]] == ["admin"]
    [admin_rule] = [
        rule
        for rule in one("NetworkPolicy")["spec"]["ingress"]
        if any(port["port"] == "admin" for port in rule["ports"])
    ]
    assert admin_rule["from"], "the admin port is open to every pod"


def test_services_and_budget_select_the_gateway_pods() -> None:
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = [one("Deployment")["spec"]["selector"]["matchLabels"]]
    selectors += [d["spec"]["selector"] for d in manifests() if d["kind"] == "Service"]
    selectors.append(one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    selectors.append(one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    for selector in selectors:
        assert selector.items() <= labels.items()
    image = container()["image"]
    assert ":" in image and not image.endswith(":latest")

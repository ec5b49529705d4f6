"""The image and the compose file for real, with podman: build, train in one container, serve from another.

Selected with ``-m container`` and left out with ``-m "not container"``. Needs root (podman, runc and debootstrap come
from Debian's packages, installed when missing, and the base images are built locally; see podman_env); elsewhere
it skips and says why. Containers use the host network on loopback ports picked per run, and every container, pod
and volume a test starts is removed afterwards, pass or fail.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import podman_env
import pytest
import redis
import yaml
from podman_env import REPO, free_port, run

from cache.keys import Keys

pytestmark = [pytest.mark.container, pytest.mark.timeout(1200)]

MAX_ABOVE_BASE_BYTES = 500 * 1000 * 1000  # the image may add at most 500 MB to its base image
RUN_ID = f"shopreco-test-{os.getpid()}"
CURRENT = Keys("reco").current  # the key naming the published version, under the default prefix the containers use


@pytest.fixture(scope="module")
def podman() -> None:
    """podman usable (installed if missing) and the base-image stand-ins in the image store; skip loudly if not."""
    try:
        podman_env.ensure_podman()
    except podman_env.Unavailable as exc:
        reason = f"CONTAINER CHECK SKIPPED: {exc} (the image, the compose file and the health check are untested here)"
        warnings.warn(reason, stacklevel=1)
        print(f"\n*** {reason} ***", file=sys.__stderr__, flush=True)
        pytest.skip(reason)
    podman_env.ensure_standins()


@pytest.fixture(scope="module")
def image(podman: None) -> Iterator[str]:
    """The project's image, built from the Dockerfile with layer caching, under a tag of this run's own."""
    tag = f"localhost/{RUN_ID}:latest"
    run(["podman", "build", "--pull=never", "--network=host", "--layers", "-t", tag, str(REPO)], timeout=1200)
    yield tag
    run(["podman", "untag", tag, tag], check=False)  # the image stays as layer cache for the next build


@pytest.fixture(scope="module")
def shop() -> Iterator[Path]:
    """A small demo shop in a directory the image's non-root user can read (./data of the compose project)."""
    root = Path(tempfile.mkdtemp(prefix=f"{RUN_ID}-"))
    try:
        root.chmod(0o755)
        data = root / "data"
        subprocess.run(
            [sys.executable, "-m", "training.cli", "demo-data", "--out", str(data)]
            + ["--users", "300", "--items", "80", "--days", "60"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        for path in [data, *data.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def buyer(shop: Path) -> str:
    """A customer of the demo shop with purchases (the model knows them, so /recommend has personal picks)."""
    with open(shop / "data" / "events.csv", newline="") as fh:
        return next(row["user_id"] for row in csv.DictReader(fh) if row["event_type"] == "purchase")


def inspect(name: str, template: str, kind: str = "container") -> str:
    return run(["podman", kind, "inspect", "--format", template, name]).stdout.strip()


def get_json(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_for_redis(port: int, within: float = 60) -> None:
    client = redis.Redis(port=port, socket_timeout=2)
    deadline = time.time() + within
    while True:
        try:
            if client.ping():
                return
        except redis.ConnectionError:
            if time.time() > deadline:
                raise
        time.sleep(0.3)


def wait_healthy(container: str, within: float = 180) -> None:
    """Run the image's health check until it passes (podman runs it from systemd timers, absent here)."""
    deadline = time.time() + within
    while run(["podman", "healthcheck", "run", container], check=False).returncode != 0:
        state = inspect(container, "{{.State.Status}}")
        logs = run(["podman", "logs", "--tail", "30", container], check=False)
        assert state == "running", f"{container} is {state}:\n{logs.stdout}{logs.stderr}"
        assert time.time() < deadline, f"{container} not healthy after {within} s:\n{logs.stdout}{logs.stderr}"
        time.sleep(1)
    assert inspect(container, "{{.State.Health.Status}}") == "healthy"


def assert_serves(port: int, shop: Path, version: str | None = None) -> None:
    status, ready = get_json(port, "/readyz")
    assert status == 200, ready
    assert ready["version"] and (version is None or ready["version"] == version)
    status, picks = get_json(port, f"/recommend?user_id={buyer(shop)}&n=5")
    assert status == 200, picks
    assert picks["items"], picks
    assert picks["source"].startswith("personal"), picks


def remove_containers(*names: str) -> None:
    run(["podman", "rm", "--force", "--ignore", "--time", "0", *names], check=False)


def test_image_is_at_most_500_mb_above_its_base_runs_as_non_root_and_has_a_health_check(image: str) -> None:
    size = int(inspect(image, "{{.Size}}", "image"))
    base = int(inspect("docker.io/library/python:3.11-slim", "{{.Size}}", "image"))
    above = size - base
    print(f"\nimage: {size / 1e6:.0f} MB, {above / 1e6:.0f} MB ({above / 2**20:.0f} MiB) above python:3.11-slim")
    assert above <= MAX_ABOVE_BASE_BYTES, f"{above / 1e6:.0f} MB above the base image"
    assert inspect(image, "{{.Config.User}}", "image") == "reco"
    assert "/healthz" in inspect(image, "{{json .Config.Healthcheck}}", "image")
    # implicit's compiled extension loads (it needs the OpenMP runtime), and nothing of the build is left over.
    probe = "import implicit.cpu._als, importlib.util as u; print(u.find_spec('pip') is None)"
    proc = run(["podman", "run", "--rm", "--network=host", "--entrypoint", "python", image, "-c", probe], check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr
    # Charts (matplotlib) are left out: the report command says so in one sentence.
    proc = run(["podman", "run", "--rm", "--network=host", image, "report", "--events", "/none.csv"], check=False)
    assert proc.returncode == 2 and "matplotlib" in proc.stdout + proc.stderr, proc


def test_train_in_one_container_serve_from_another(image: str, shop: Path) -> None:
    redis_port, api_port = free_port(), free_port()
    names = {part: f"{RUN_ID}-{part}" for part in ("redis", "train", "api")}
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    try:
        run(["podman", "run", "-d", "--name", names["redis"], "--network=host", "docker.io/library/redis:7-alpine"]
            + ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""])  # fmt: skip
        wait_for_redis(redis_port)
        trained = run(
            ["podman", "run", "--rm", "--name", names["train"], "--network=host", "-e", f"REDIS_URL={redis_url}"]
            + ["-v", f"{shop / 'data'}:/input:ro", image]
            + ["train", "--events", "/input/events.csv", "--items", "/input/items.csv", "--no-progress"],
            timeout=600,
        )
        version = redis.Redis.from_url(redis_url).get(CURRENT)
        assert version, trained.stdout
        run(["podman", "run", "-d", "--name", names["api"], "--network=host", "-e", f"REDIS_URL={redis_url}"]
            + ["-e", "RECO_HOST=127.0.0.1", "-e", f"RECO_PORT={api_port}", image])  # fmt: skip
        wait_healthy(names["api"])
        assert_serves(api_port, shop, version.decode())
    finally:
        remove_containers(*names.values())


def compose_for_this_host(shop: Path, image: str, redis_port: int, api_port: int) -> Path:
    """The project's docker-compose.yml as this machine runs it: host network on loopback ports of this run (there
    is no container network here), the image built above instead of a build per service. Everything else as is."""
    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    for service in spec["services"].values():
        service.pop("build", None)
        service.pop("ports", None)
        service["network_mode"] = "host"
        if str(service.get("image", "")).startswith("shop-reco"):
            service["image"] = image
        if "REDIS_URL" in (service.get("environment") or {}):
            service["environment"]["REDIS_URL"] = redis_url
    redis_service = spec["services"]["redis"]
    redis_service["command"] += ["--port", str(redis_port), "--bind", "127.0.0.1"]
    redis_service["healthcheck"]["test"] = ["CMD", "redis-cli", "-p", str(redis_port), "ping"]
    spec["services"]["api"]["environment"].update({"RECO_HOST": "127.0.0.1", "RECO_PORT": str(api_port)})
    path = shop / "docker-compose.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def compose(path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """podman-compose (the PyPI release: Debian's 1.0.3 cannot put a service on the host network)."""
    tool = Path(sys.executable).with_name("podman-compose")
    return run([str(tool), "-p", RUN_ID, "-f", str(path), *args], check=False, timeout=timeout, cwd=path.parent)


def project_containers() -> list[str]:
    listing = run(
        ["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=io.podman.compose.project={RUN_ID}"]
    )
    return listing.stdout.split()


def test_compose_file_comes_up_trains_serves_and_goes_down(image: str, shop: Path) -> None:
    redis_port, api_port = free_port(), free_port()
    path = compose_for_this_host(shop, image, redis_port, api_port)
    volume = f"{RUN_ID}_redis-data"
    try:
        up = compose(path, "up", "-d", "redis", "api")
        wait_for_redis(redis_port)
        names = project_containers()
        api = next((n for n in names if "_api_" in n), None)
        assert api, f"no api container after up:\n{up.stdout}{up.stderr}"
        assert inspect(f"{RUN_ID}_redis-data", "{{.Name}}", "volume") == volume  # persistence: a named volume
        # podman-compose may exit 0 when a step failed: the job's own output and Redis tell whether it ran.
        trained = compose(path, "--profile", "job", "run", "--rm", "-T", "train")
        assert "published version" in trained.stdout, f"{trained.stdout}\n{trained.stderr}"
        version = redis.Redis(port=redis_port).get(CURRENT)
        assert version, trained.stdout
        wait_healthy(api)
        assert_serves(api_port, shop, version.decode())
        down = compose(path, "down", "--volumes")
        assert project_containers() == [], f"containers left after down:\n{down.stdout}{down.stderr}"
    finally:
        remove_containers(*project_containers())
        run(["podman", "pod", "rm", "--force", "--ignore", f"pod_{RUN_ID}"], check=False)
        run(["podman", "volume", "rm", "--force", volume], check=False)

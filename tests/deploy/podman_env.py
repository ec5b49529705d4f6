"""podman for the container check: installed from Debian's packages when missing, base-image stand-ins built once.

No Docker engine and no registry of base images is assumed. podman runs as root with the settings in
``containers.conf`` beside this file. The base images the Dockerfile and compose file name (``python:3.11-slim``,
``redis:7-alpine``) are built locally from a ``debootstrap --variant=minbase bookworm`` tree when they are not in the
image store yet (recipes in ``standins/``); the tree is kept as a tarball under the cache directory
(``/var/cache/shop-reco``, or ``RECO_CONTAINER_CACHE``), outside the repository, so a wiped image store is rebuilt
without downloading it again. A file lock there keeps two runs from building the same thing at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONF = HERE / "containers.conf"
CACHE_DIR = Path(os.environ.get("RECO_CONTAINER_CACHE", "/var/cache/shop-reco"))
DEBIAN_BASE = "localhost/shop-reco-standin/debian:bookworm-minbase"
STANDINS = {  # name the Dockerfile / compose file use -> recipe in standins/
    "docker.io/library/python:3.11-slim": "python.Containerfile",
    "docker.io/library/redis:7-alpine": "redis.Containerfile",
}
RECIPE_LABEL = "shop-reco.standin-recipe"
APT_PACKAGES = ["podman", "runc", "debootstrap"]
TOOLS = ["podman", "runc", "debootstrap"]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class Unavailable(Exception):
    """podman cannot be used on this machine (the reason is the message)."""


def env() -> dict[str, str]:
    """Environment for podman and podman-compose: our containers.conf, Docker image format (keeps HEALTHCHECK)."""
    return {**os.environ, "CONTAINERS_CONF": str(CONF), "BUILDAH_FORMAT": "docker"}


def run(args: Sequence[str], *, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with the podman environment, output captured as text; a failure shows the command's output."""
    proc = subprocess.run(list(args), env=env(), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        output = f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}\n{output}")
    return proc


@contextlib.contextmanager
def cache_lock() -> Iterator[Path]:
    """Exclusive lock on the cache directory (two test runs must not build the same stand-in at once)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "setup.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield CACHE_DIR
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_podman() -> None:
    """Install podman, runc and debootstrap from Debian's packages when missing (needs root). podman-compose comes
    from PyPI with the test extras: Debian's 1.0.3 cannot put a service on the host network."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise Unavailable(f"{', '.join(missing)} not installed and not running as root, so they cannot be installed")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"{', '.join(missing)} not installed and there is no apt-get to install them")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
    with cache_lock():
        if subprocess.run(install, env=apt_env, capture_output=True).returncode != 0:  # stale lists: update once
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], env=apt_env, check=True)
            subprocess.run(install, env=apt_env, check=True, capture_output=True)


def image_exists(name: str) -> bool:
    return run(["podman", "image", "exists", name], check=False).returncode == 0


def image_label(name: str, label: str) -> str | None:
    proc = run(["podman", "image", "inspect", "--format", f'{{{{ index .Labels "{label}" }}}}', name], check=False)
    value = proc.stdout.strip()
    return value if proc.returncode == 0 and value and value != "<no value>" else None


def debian_mirror() -> str:
    """The Debian mirror apt on this host uses (deb822 or one-line sources), else the public one."""
    sources = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def ensure_debian_base() -> None:
    """The minbase Debian image the stand-ins build on: imported from the cached debootstrap tarball."""
    if image_exists(DEBIAN_BASE):
        return
    tarball = CACHE_DIR / "bookworm-minbase.tar"
    if not tarball.exists():
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
            root = Path(tmp) / "root"
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(root), debian_mirror()],
                check=True,
                capture_output=True,
            )
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
    run(["podman", "import", str(tarball), DEBIAN_BASE])


def recipe_digest(recipe: Path) -> str:
    digest = hashlib.sha256(recipe.read_bytes())
    digest.update(HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b"")
    return digest.hexdigest()[:16]


def ensure_standins() -> list[str]:
    """Build each base-image stand-in that is missing or built from another recipe; returns the names built."""
    built = []
    with cache_lock():
        for name, recipe_file in STANDINS.items():
            recipe = HERE / "standins" / recipe_file
            digest = recipe_digest(recipe)
            if image_exists(name) and image_label(name, RECIPE_LABEL) == digest:
                continue
            ensure_debian_base()
            with tempfile.TemporaryDirectory() as context:
                if HOST_CA_BUNDLE.exists():
                    shutil.copy(HOST_CA_BUNDLE, Path(context) / "ca-certificates.crt")
                else:
                    (Path(context) / "ca-certificates.crt").write_text("")
                run(
                    ["podman", "build", "--pull=never", "--network=host", "--label", f"{RECIPE_LABEL}={digest}"]
                    + ["-t", name, "-f", str(recipe), context],
                    timeout=900,
                )
            built.append(name)
    return built


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now (containers use the host network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

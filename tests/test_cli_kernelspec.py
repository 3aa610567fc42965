"""Tests of ``aikit kernel install|uninstall``, the CLI shell and the packaged kernelspec."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import sysconfig
import types
import zipfile
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from aikit_kernel.cli.main import main, package_version
from aikit_kernel.kernelspec import SPEC_FILES, spec_source_dir

REPO = Path(__file__).resolve().parent.parent
EXPECTED_ARGV = [sys.executable, "-m", "aikit_kernel", "-f", "{connection_file}"]
LOGO_SIZES = {"logo-32x32.png": 32, "logo-64x64.png": 64}


def kernels_under(prefix: Path) -> Path:
    """Return the kernels directory that ``--prefix PREFIX`` installs into."""
    return prefix / "share" / "jupyter" / "kernels"


def png_size(path: Path) -> tuple[int, int]:
    """Return (width, height) from a PNG's IHDR chunk, checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_install_prefix_is_found_by_jupyter(tmp_path: Path) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path)]) == 0

    ksm = KernelSpecManager(kernel_dirs=[str(kernels_under(tmp_path))])
    assert "aikit" in ksm.find_kernel_specs()
    spec = ksm.get_kernel_spec("aikit")
    assert spec.display_name == "aikit (Lua)"
    assert spec.language == "lua"
    assert spec.argv == EXPECTED_ARGV
    assert spec.interrupt_mode == "message"
    spec_dir = Path(spec.resource_dir)
    for name in SPEC_FILES:
        assert (spec_dir / name).is_file(), name
    for name, size in LOGO_SIZES.items():
        assert png_size(spec_dir / name) == (size, size)


def test_install_name_and_display_name(tmp_path: Path) -> None:
    argv = ["kernel", "install", "--prefix", str(tmp_path), "--name", "Aikit-Dev",
            "--display-name", "aikit (dev)"]
    assert main(argv) == 0
    ksm = KernelSpecManager(kernel_dirs=[str(kernels_under(tmp_path))])
    spec = ksm.get_kernel_spec("aikit-dev")  # jupyter lower-cases kernel names
    assert spec.display_name == "aikit (dev)"
    assert spec.argv == EXPECTED_ARGV


def test_install_replaces_existing(tmp_path: Path) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--display-name", "old"]) == 0
    assert main(["kernel", "install", "--prefix", str(tmp_path)]) == 0
    spec = json.loads((kernels_under(tmp_path) / "aikit" / "kernel.json").read_text())
    assert spec["display_name"] == "aikit (Lua)"


def test_install_defaults_to_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert main(["kernel", "install"]) == 0
    assert (tmp_path / "data" / "kernels" / "aikit" / "kernel.json").is_file()
    assert main(["kernel", "uninstall", "--user", "-y"]) == 0
    assert not (tmp_path / "data" / "kernels" / "aikit").exists()


def test_install_sys_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert main(["kernel", "install", "--sys-prefix"]) == 0
    spec = json.loads((kernels_under(tmp_path) / "aikit" / "kernel.json").read_text())
    assert spec["argv"] == EXPECTED_ARGV


def test_location_options_are_exclusive(tmp_path: Path) -> None:
    assert main(["kernel", "install", "--user", "--prefix", str(tmp_path)]) == 2


def test_invalid_name_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--name", "bad name!"]) == 1
    assert "Invalid kernel name" in capsys.readouterr().err


def test_uninstall_removes_spec(tmp_path: Path) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path)]) == 0
    assert main(["kernel", "uninstall", "--prefix", str(tmp_path), "-y"]) == 0
    assert not (kernels_under(tmp_path) / "aikit").exists()
    ksm = KernelSpecManager(kernel_dirs=[str(kernels_under(tmp_path))])
    assert "aikit" not in ksm.find_kernel_specs()


def test_uninstall_missing_spec_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kernel", "uninstall", "--prefix", str(tmp_path), "-y"]) == 1
    err = capsys.readouterr().err
    assert "no kernelspec named 'aikit' is installed" in err


def test_uninstall_missing_name_on_jupyter_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kernel", "uninstall", "--name", "aikit-no-such-kernel", "-y"]) == 1
    assert "no kernelspec named 'aikit-no-such-kernel'" in capsys.readouterr().err


@pytest.mark.parametrize(("answer", "removed"), [("y\n", True), ("n\n", False), ("", False)])
def test_uninstall_asks_for_confirmation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, removed: bool
) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path)]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    rc = main(["kernel", "uninstall", "--prefix", str(tmp_path)])
    assert rc == (0 if removed else 1)
    assert (kernels_under(tmp_path) / "aikit").exists() is not removed


def test_spec_source_is_the_checkout_in_dev_installs() -> None:
    source = spec_source_dir()
    assert json.loads((source / "kernel.json").read_text())["language"] == "lua"
    for name in SPEC_FILES:
        assert (source / name).is_file(), name


def test_checked_in_logos_have_their_sizes() -> None:
    for name, size in LOGO_SIZES.items():
        assert png_size(REPO / "kernelspec" / name) == (size, size)


def test_pip_install_registered_kernelspec() -> None:
    """`pip install -e .` (make venv) writes the shared-data kernelspec into sys.prefix."""
    installed = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "aikit"
    assert (installed / "kernel.json").is_file(), "run `make venv` to install aikit"
    for name in SPEC_FILES:
        assert (installed / name).is_file(), name
    assert json.loads((installed / "kernel.json").read_text()) == json.loads(
        (REPO / "kernelspec" / "kernel.json").read_text()
    ), "the installed kernelspec is stale: run `make venv`"
    ksm = KernelSpecManager(kernel_dirs=[str(installed.parent)])
    assert ksm.get_kernel_spec("aikit").language == "lua"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"aikit {package_version()}"


def test_console_script_runs() -> None:
    script = Path(sysconfig.get_path("scripts")) / "aikit"
    assert script.is_file(), "the `aikit` console script is not installed: run `make venv`"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("aikit ")


def test_usage_errors_exit_2() -> None:
    assert main([]) == 2
    assert main(["kernel"]) == 2
    assert main(["no-such-command"]) == 2


def test_run_delegates_to_run_command(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def run_command(script: str, script_args: list[str], named: dict[str, str], strict: bool = False) -> int:
        calls.append((script, script_args, named))
        return 7

    fake = types.ModuleType("aikit_kernel.cli.run")
    fake.run_command = run_command  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aikit_kernel.cli.run", fake)
    assert main(["run", "hello.lua", "-v", "--flag", "x"]) == 7
    assert main(["run", "--arg", "k=v", "hello.lua"]) == 7
    assert calls == [("hello.lua", ["-v", "--flag", "x"], {}), ("hello.lua", [], {"k": "v"})]


def test_wheel_ships_kernelspec(tmp_path: Path) -> None:
    """A regular wheel carries the spec both as shared data and as package data."""
    pytest.importorskip("hatchling")
    from hatchling.builders.wheel import WheelBuilder

    wheel = next(iter(WheelBuilder(str(REPO)).build(directory=str(tmp_path), versions=["standard"])))
    names = set(zipfile.ZipFile(wheel).namelist())
    data = f"aikit-{package_version()}.data/data/share/jupyter/kernels/aikit/"
    for name in SPEC_FILES:
        assert data + name in names, data + name
        assert "aikit_kernel/resources/kernelspec/" + name in names, name

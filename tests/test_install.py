"""scripts/on-path.sh, which install.sh runs last: after the Quick start, plain `voicecli` works or
the user is told exactly how to make it work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def on_path(tmp_path: Path, *args: str, path: str = "/usr/bin:/bin"):
    program = tmp_path / "venv" / "bin" / "voicecli"
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text("#!/bin/sh\necho voicecli 0\n")
    program.chmod(0o755)
    env = {"HOME": str(tmp_path / "home"), "PATH": path, "VOICECLI_BIN": str(program)}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "on-path.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=30)
    return proc, program


def test_without_link_it_says_how_to_put_voicecli_on_path(tmp_path):
    proc, program = on_path(tmp_path)
    assert proc.returncode == 0
    assert "bash scripts/install.sh --link" in proc.stderr
    assert f'export PATH="{program.parent}:$PATH"' in proc.stderr
    assert "pipx install ." in proc.stderr and "uv tool install ." in proc.stderr
    assert not (tmp_path / "home" / ".local" / "bin" / "voicecli").exists()


def test_link_makes_plain_voicecli_work_once_local_bin_is_on_path(tmp_path):
    proc, program = on_path(tmp_path, "--link")
    link = tmp_path / "home" / ".local" / "bin" / "voicecli"
    assert proc.returncode == 0 and os.readlink(link) == str(program)
    assert "is not on your PATH" in proc.stderr and "export PATH=" in proc.stderr  # ~/.local/bin is not, here
    proc, _ = on_path(tmp_path, "--link", path=f"{link.parent}:/usr/bin:/bin")
    assert proc.returncode == 0 and f"voicecli is on your PATH ({link})" in proc.stderr
    ran = subprocess.run(["voicecli"], capture_output=True, text=True, env={"PATH": f"{link.parent}:/usr/bin:/bin"})
    assert ran.stdout == "voicecli 0\n"


def test_link_leaves_someone_elses_voicecli_alone(tmp_path):
    other = tmp_path / "home" / ".local" / "bin" / "voicecli"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\necho other\n")
    proc, _ = on_path(tmp_path, "--link")
    assert proc.returncode == 1 and "left alone" in proc.stderr
    assert other.read_text() == "#!/bin/sh\necho other\n"

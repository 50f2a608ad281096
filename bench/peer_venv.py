"""A peer's own virtualenv for the benchmarks that run peers (bench/serving, bench/drift).

Made with the project's uv (Python 3.11, packages from PyPI) and reused while its package list
is unchanged: the list is stamped in the virtualenv, and a changed one rebuilds it from scratch.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

UV = Path(__file__).resolve().parents[1] / ".venv/bin/uv"


def ensure_venv(venv: Path, packages: list[str]) -> Path:
    """The virtualenv at `venv` with exactly `packages` installed (reused when stamped so)."""
    stamp = venv / ".packages"
    if not stamp.exists() or stamp.read_text() != "\n".join(packages):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(UV), "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
        subprocess.run(
            [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin/python"), *packages],
            check=True,
        )
        stamp.write_text("\n".join(packages))
    return venv

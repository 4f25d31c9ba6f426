"""What the benchmark scripts share: the repo root, the release build of `omnitrail`, and the
venv (~/.cache/omnitrail-bench-venv) their peers (DuckDB, Polars, pyarrow) are installed into."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path.home() / ".cache" / "omnitrail-bench-venv"


def in_venv(script, packages):
    """Re-runs `script` inside the bench venv, creating it and installing `packages` first."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    missing = subprocess.run([str(python), "-c", "import " + ", ".join(packages)], capture_output=True)
    if missing.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet"] + packages, check=True)
    os.execv(str(python), [str(python), script] + sys.argv[1:])


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def build():
    """Builds `omnitrail` in release and returns the binary's path."""
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "omnitrail"], cwd=ROOT, check=True)
    return target_dir() / "release" / "omnitrail"

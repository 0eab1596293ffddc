"""The import layering (pyproject.toml [tool.importlinter]) and the imports deferred into functions."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())", "--no-cache"]

# Imports inside functions, per file, each deferring something heavy or optional. Everything else
# is imported at module top, so the import graph (and the layering check) sees it.
DEFERRED = {
    # jax and everything that imports it wait until the command line is checked, and the runtime
    # (device count, distributed start-up) is set before anything touches a device.
    "macl_jax/main.py": {"jax", "macl_jax.train.runtime", "macl_jax.train.restore", "macl_jax.infer.generate",
                         "macl_jax.importers.cli"},
    "macl_jax/geometry/_backend.py": {"jax.numpy"},  # the numpy-only Grain workers never load jax
    "macl_jax/parallel/distributed.py": {"jax._src"},  # a private TPU probe, guarded: missing means "not a TPU VM"
    "macl_jax/train/logging.py": {"tensorboardX", "tqdm"},  # only process 0 writes events; bars on terminals only
    "macl_jax/evals/report.py": {"matplotlib", "matplotlib.pyplot"},  # plots only
    "macl_jax/evals/mdn_plots.py": {"matplotlib", "matplotlib.pyplot"},
    "macl_jax/metrics/csim.py": {"dlib", "face_recognition_models"},  # native wheel; pkg_resources at import
    "data_pipelines/real/preprocess.py": {"dlib", "face_recognition_models"},
    "data_pipelines/datasets.py": {"tensorflow_datasets"},  # inference reads no TFDS
    "data_pipelines/schema.py": {"tensorflow_datasets"},
    # The TFDS builder modules (tensorflow_datasets) load only when a real dataset is built.
    "data_pipelines/real/__init__.py": {"data_pipelines.real", "data_pipelines.real.builder", "data_pipelines.real.mead",
                                        "data_pipelines.real.voxceleb1", "data_pipelines.real.voxceleb2"},
    "data_pipelines/real/beam.py": {"apache_beam", "apache_beam.options.pipeline_options"},  # optional runner
    "data_pipelines/real/fixtures.py": {"librosa", "skimage"},  # test fixtures only
}


def _function_level_imports(path: Path) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if in_function and isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif in_function and isinstance(child, ast.ImportFrom):
                found.add("." * child.level + (child.module or ""))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()), False)
    return found


def _layers() -> list[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def test_every_package_keeps_the_layering():
    proc = subprocess.run(LINT, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_library_package_has_a_layer():
    """A new package or top-level module must be placed in the layering, or nothing checks it."""
    names = {p.stem if p.is_file() else p.name for p in (REPO_ROOT / "macl_jax").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert {f"macl_jax.{n}" for n in names} <= set(_layers()), sorted({f"macl_jax.{n}" for n in names} - set(_layers()))
    assert "data_pipelines" in _layers()


def test_an_upward_import_breaks_the_contract(tmp_path):
    for package in ("macl_jax", "data_pipelines"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    media = tmp_path / "macl_jax" / "media" / "atomic.py"
    media.write_text(media.read_text() + "\nimport macl_jax.train.loop  # noqa: E402\n")
    proc = subprocess.run(LINT, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "macl_jax.media.atomic -> macl_jax.train.loop" in proc.stdout


def test_imports_inside_functions_only_defer_heavy_or_optional_packages():
    found = {}
    for root in ("macl_jax", "data_pipelines"):
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            imports = _function_level_imports(path)
            if imports:
                found[path.relative_to(REPO_ROOT).as_posix()] = imports
    unexpected = {f: sorted(m - DEFERRED.get(f, set())) for f, m in found.items() if m - DEFERRED.get(f, set())}
    assert not unexpected, f"import these at module top (or add the heavy dependency to DEFERRED with its reason): {unexpected}"
    stale = {f: sorted(m - found.get(f, set())) for f, m in DEFERRED.items() if m - found.get(f, set())}
    assert not stale, f"no longer deferred; drop from DEFERRED: {stale}"


def test_the_function_level_import_scan_sees_nested_and_relative_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import numpy\n"
        "def f():\n    import json\n    def g():\n        from . import sibling\n    return json\n"
        "class C:\n    def m(self):\n        from a.b import c\n"
    )
    assert _function_level_imports(source) == {"json", ".", "a.b"}

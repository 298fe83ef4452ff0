"""Release checks: what the wheel holds and requires, and that the losses stand alone.

* The wheel (``pip wheel --no-deps --no-build-isolation``, built from a copy of the checkout)
  holds the ``handvae`` package only, never ``experiments`` or ``data_prep``; its
  ``Requires-Dist`` is jax and numpy, the rest sits in the extras ``data``, ``train``, ``all``.
* Every third-party import of the code is declared; the losses and ops import only the core.
* ``import handvae.losses`` adds no module but handvae's own and the standard library's to
  what ``import jax`` already loaded (no flax, PIL, optax, TFDS, ...).
* The README's loss snippet runs here and, behind ``slow`` (it installs jax and numpy from the
  package index), in a fresh virtual environment that holds the wheel and its core
  dependencies only.

Install figures (moved from WORKSPACE.md, "Dependencies")

Fresh venvs from PyPI (2026-12-07, load 12–19): core 622 MB in 45–59 s (jax, jaxlib, scipy,
numpy: jax's own cost), full 1.09 GB in 113–139 s; `import handvae.losses` 3.5 → 2.9 s,
`import jax` alone 2.7 s.
"""

from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CORE = {"jax", "numpy"}
EXTRAS = {"data", "train", "all", "test"}
# Layers a core install must import: the losses and the dependency-free ops.
CORE_CODE = ["handvae/__init__.py", "handvae/losses", "handvae/ops/__init__.py",
             "handvae/ops/camera.py", "handvae/ops/gaussian.py", "handvae/ops/rotation.py",
             "handvae/ops/skeleton.py", "handvae/ops/view_crop.py"]
SNIPPET_MARKER = "<!-- release check: tests/test_release.py runs this snippet -->"


def _normalise(name: str) -> str:
    """A distribution name in PEP 503 form (``Tensorflow_Datasets`` → ``tensorflow-datasets``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(line: str) -> tuple[str, str | None]:
    """``(distribution, extra or None)`` of one ``Requires-Dist`` value."""
    name = _normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line).group(1))
    extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", line)
    return name, extra.group(1) if extra else None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The wheel built from a copy of the checkout (the build leaves no files in the repo)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("handvae", "experiments", "data_prep"):  # the latter two must stay out
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, (
        "pip wheel failed (the test extra brings setuptools>=70.1: pip install -e '.[test]')"
        f"\n{result.stdout}\n{result.stderr}")
    (path,) = out.glob("handvae-*.whl")
    return path


@pytest.fixture(scope="module")
def metadata(wheel):
    """The wheel's METADATA as an email message."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_wheel_holds_only_the_handvae_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"handvae"}
    for layer in ("ops", "data", "models", "losses", "evaluation", "training", "inference"):
        assert f"handvae/{layer}/__init__.py" in names
    assert "handvae/losses/_auction_pallas.py" in names
    assert "handvae/losses/README.md" in names  # the losses' reference page


def test_wheel_requires_only_jax_and_numpy(metadata):
    requirements = [_requirement(line) for line in metadata.get_all("Requires-Dist", [])]
    assert {name for name, extra in requirements if extra is None} == CORE
    assert set(metadata.get_all("Provides-Extra", [])) == EXTRAS
    by_extra = {extra: {name for name, e in requirements if e == extra} for extra in EXTRAS}
    assert by_extra["all"] == by_extra["data"] | by_extra["train"]
    assert {"tensorflow-datasets", "pillow", "array-record", "scipy"} <= by_extra["data"]
    assert {"flax", "optax", "orbax-checkpoint", "ml-collections"} <= by_extra["train"]
    assert "pytest" in by_extra["test"]


def _third_party_imports(paths: list[str]) -> dict[str, str]:
    """Top-level module → a file that imports it, for every non-stdlib absolute import."""
    found = {}
    files = []
    for path in paths:
        target = REPO / path
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names | {"handvae", "experiments", "data_prep"}:
                    found.setdefault(top, str(file.relative_to(REPO)))
    return found


def _distributions(modules: dict[str, str]) -> dict[str, str]:
    """Distribution → an importing file, through the installed packages' module lists."""
    owners = importlib.metadata.packages_distributions()
    missing = sorted(set(modules) - set(owners))
    assert not missing, f"imported but not installed here: {missing}"
    return {_normalise(owners[module][0]): where for module, where in modules.items()}


def test_every_import_is_declared(metadata):
    requirements = [_requirement(line) for line in metadata.get_all("Requires-Dist", [])]
    declared = {name for name, extra in requirements if extra in (None, "all")}
    used = _distributions(_third_party_imports(["handvae", "experiments", "data_prep"]))
    undeclared = {name: where for name, where in used.items() if name not in declared}
    assert not undeclared, f"add these to setup.cfg (core or an extra): {undeclared}"
    core_used = _distributions(_third_party_imports(CORE_CODE))
    assert set(core_used) <= CORE, f"the core code imports beyond jax/numpy: {core_used}"


def test_losses_import_nothing_beyond_jax():
    code = (
        "import sys, jax, jax.numpy\n"
        "from jax.experimental import pallas\n"
        "before = set(sys.modules)\n"
        "import handvae.losses\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - sys.stdlib_module_names - {'handvae'}))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flax', 'optax', 'orbax', "
        "'PIL', 'tensorflow_datasets', 'tensorflow', 'matplotlib', 'ml_collections', "
        "'tensorboardX', 'array_record', 'tqdm'}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=REPO)
    assert result.stdout.splitlines() == ["[]", "[]"], result.stdout


def _readme_snippet() -> str:
    """The README's loss snippet: the ```python block after :data:`SNIPPET_MARKER`."""
    readme = (REPO / "README.md").read_text()
    assert SNIPPET_MARKER in readme, "the README's loss snippet lost its marker"
    tail = readme.split(SNIPPET_MARKER, 1)[1]
    return re.search(r"```python\n(.*?)```", tail, re.DOTALL).group(1)


def _check_snippet_output(stdout: str) -> None:
    """The snippet's last line: ``ok loss <value> grad [B, N, 3] converged True kl [B]``."""
    assert re.search(r"^ok loss \d+\.\d+ grad \(8, 256, 3\) converged True kl \(8,\)$", stdout,
                     re.MULTILINE), stdout


def test_readme_loss_snippet_runs(tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(_readme_snippet())
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            check=False, cwd=tmp_path,
                            env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    _check_snippet_output(result.stdout)


@pytest.mark.slow
def test_readme_loss_snippet_in_a_fresh_core_venv(wheel, tmp_path):
    """pip installs the wheel with its core dependencies (from the index) into a new venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True)
    script = tmp_path / "snippet.py"
    script.write_text(_readme_snippet() + (
        "\nimport sys\n"
        "assert not {m.split('.')[0] for m in sys.modules} & {'flax', 'PIL', 'optax'}\n"))
    # cwd and PYTHONPATH away from the checkout: the installed wheel is what runs.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([str(python), str(script)], capture_output=True, text=True,
                            check=False, cwd=tmp_path, env={**env, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    _check_snippet_output(result.stdout)
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, check=True).stdout
    names = {_normalise(line.split("==")[0]) for line in installed.split()}
    assert not names & {"flax", "optax", "tensorflow-datasets", "pillow", "matplotlib"}

"""The layer rule of WORKSPACE.md: imports flow ops → data → models → losses → evaluation →
training → experiments, and handvae never imports data_prep."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("ops", "data", "models", "losses", "evaluation", "training", "inference")


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "handvae" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


@pytest.mark.parametrize("layer", LAYERS)
def test_handvae_layers_import_only_to_their_left(layer):
    own = LAYERS.index(layer)
    for path in sorted((ROOT / "handvae" / layer).rglob("*.py")):
        for module in _imports(path):
            assert not module.startswith("data_prep"), f"{path} imports {module}"
            assert not module.startswith("experiments"), f"{path} imports {module}"
            other = _layer_of(module)
            if other is not None:
                assert other <= own, (
                    f"{path.relative_to(ROOT)} (layer {layer}) imports {module}, "
                    f"which is to its right")


def test_data_prep_uses_only_handvae_ops():
    for path in sorted((ROOT / "data_prep").rglob("*.py")):
        for module in _imports(path):
            if module.startswith("handvae"):
                assert module == "handvae" or module.startswith("handvae.ops"), (
                    f"{path.relative_to(ROOT)} imports {module}; data_prep may use handvae.ops "
                    "only")

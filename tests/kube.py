"""kubectl for tests: the real binary against the test cluster, with readable failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def kubectl_binary() -> str:
    local = ROOT / "bin" / "kubectl"
    if local.is_file():
        return str(local)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: run `make bin` (builds it with the control plane)")
    return found


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Kubectl:
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> Result:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run(
            [kubectl_binary(), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return result

    def apply_file(self, path: Path) -> Result:
        return self.run("apply", "--server-side", "-f", str(path))

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]], *, check: bool = True, dry_run: bool = False) -> Result:
        docs = obj if isinstance(obj, list) else [obj]
        args = ["apply", "--server-side", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
        return self.run(*args, stdin=yaml.safe_dump_all(docs), check=check)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = ["-n", namespace] if namespace else []
        return json.loads(self.run("get", kind, name, *ns, "-o", "json").stdout)

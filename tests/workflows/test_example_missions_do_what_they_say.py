"""The example missions do what their comments say (issue 17)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

AIKIT = str(Path(sys.executable).with_name("aikit"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "missions"


def mission_run(tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run([AIKIT, "mission", "run", str(EXAMPLES / name)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)


def test_sales_report_counts_the_blank_row(tmp_path: Path) -> None:
    proc = mission_run(tmp_path, "sales_report.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = (tmp_path / "sales_report" / "report.md").read_text()
    assert "- rows: 5 (blank rows dropped: 1)" in report


def test_resilient_pipeline_hashes_the_file_content(tmp_path: Path) -> None:
    proc = mission_run(tmp_path, "resilient_pipeline.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    digest = hashlib.sha256((tmp_path / "resilient" / "result.txt").read_bytes()).hexdigest()
    assert (tmp_path / "resilient" / "completion.log").read_text() == f"Mission attempted completion ({digest})\n"

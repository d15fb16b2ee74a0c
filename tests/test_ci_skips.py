"""Under .ci/run (DFSWEEP_CI=1) a skipped test fails the run, except the allowed ones (tests/ci_skips.py)."""

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

TESTS = Path(__file__).resolve().parent

SAMPLE = '''
import pytest

def test_ray_without_a_namespace():
    pytest.skip("Ray tests run in a private network namespace: use `make test` (scripts/isolated.sh)")

@pytest.mark.ssh
def test_opt_in_ssh():
    pytest.skip("opt-in: DFSWEEP_SSH_TEST=1")

@pytest.mark.browser
@pytest.mark.skipif(True, reason="chromium is absent")
def test_browser():
    pass

@pytest.mark.xfail(reason="a known failure, not a skip")
def test_expected_failure():
    assert False

def test_runs():
    assert 1 + 1 == 2
'''


def _outcomes(tmp_path: Path, **env) -> tuple[dict[str, str], str]:
    """Each sample test's outcome (passed, failed, error, skipped; an xfail counts as skipped in JUnit XML) in a
    pytest run of its own with the plugin, and that run's output."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n  ssh: opt-in\n  browser: chromium\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DFSWEEP_CI")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "ci_skips", "-p", "no:cacheprovider", "-q",
                           "--junitxml=out.xml", "test_sample.py"], cwd=tmp_path, capture_output=True, text=True,
                          env={**clean, "PYTHONPATH": str(TESTS), **env}, timeout=120)
    found = {}
    for case in ElementTree.parse(tmp_path / "out.xml").iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[case.get("name")] = kinds[0] if kinds else "passed"
    return found, proc.stdout


def test_outside_ci_skips_stay_skips(tmp_path):
    found, out = _outcomes(tmp_path)
    assert found == {"test_ray_without_a_namespace": "skipped", "test_opt_in_ssh": "skipped",
                     "test_browser": "skipped", "test_expected_failure": "skipped", "test_runs": "passed"}, out


@pytest.mark.parametrize("chromium", [True, False])
def test_under_ci_a_skip_fails_the_run_unless_it_is_allowed(tmp_path, chromium):
    env = {"DFSWEEP_CI": "1"} | ({} if chromium else {"DFSWEEP_CI_NO_CHROMIUM": "1"})
    found, out = _outcomes(tmp_path, **env)
    assert found == {"test_ray_without_a_namespace": "failure", "test_opt_in_ssh": "skipped",
                     # skipped by a mark: at setup, so its failure is an error
                     "test_browser": "error" if chromium else "skipped",
                     "test_expected_failure": "skipped", "test_runs": "passed"}, out
    assert "skipped under .ci/run" in out and "private network namespace" in out

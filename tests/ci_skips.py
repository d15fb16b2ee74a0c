"""Under `.ci/run` (DFSWEEP_CI=1) a skipped test fails the run, unless its skip is one of those allowed below.

A skip hides a test that did not run: a Ray test skipped because `scripts/isolated.sh` found no network namespace, a
Keras test skipped for want of an import. Locally that is a note in pytest's summary; in CI it must be a failure, or
`make test` passes with half the suite unrun. Allowed in CI:
- tests marked `ssh`: opt-in (DFSWEEP_SSH_TEST=1, `make test-ssh`), not part of `make test`;
- tests marked `browser`: only when `.ci/run` could not install Chromium, which it says and flags with
  DFSWEEP_CI_NO_CHROMIUM=1.

tests/conftest.py loads this plugin (pytest_runtest_makereport below).
"""

from __future__ import annotations

import os

import pytest

CI = "DFSWEEP_CI"
NO_CHROMIUM = "DFSWEEP_CI_NO_CHROMIUM"


def allowed_skip(item: pytest.Item) -> bool:
    if item.get_closest_marker("ssh"):
        return True
    return bool(item.get_closest_marker("browser")) and os.environ.get(NO_CHROMIUM) == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(CI) != "1" or not report.skipped or hasattr(report, "wasxfail") or allowed_skip(item):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped under .ci/run ({CI}=1), where a skip fails the run unless the test is opt-in (ssh) "
                       f"or a browser test without Chromium (see tests/ci_skips.py): {reason}")

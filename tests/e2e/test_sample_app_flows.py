"""The sample app's flows (.maestro/) cannot pass when production is broken.

The fake maestro plays each flow against a small model of the sample app's screens (tests/fakes/
_sample_app.py, following MainActivity/ExerciseViewModel: loading, error, empty and loaded views), with
the backend up, refusing sign-in, or down; `invoke validate` runs the real flows from .maestro/.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import REPO, World

FLOWS = ["add-exercise-and-see-it-in-list.yml", "delete-exercise.yml", "launch-and-sign-in-anonymously.yml",
         "list-survives-restart.yml"]


@pytest.fixture
def sample(world: World) -> World:
    shutil.copytree(REPO / ".maestro", world.flows, dirs_exist_ok=True)
    world.device()
    return world


def test_the_flows_pass_against_a_working_backend(sample: World) -> None:
    run = sample.scenario(backend="up").invoke("validate")
    assert run.returncode == 0, run.stdout + run.stderr
    record = sample.record()
    assert sorted(f["flowFileName"] for f in record["flows"]) == FLOWS
    assert all(f["status"] == "passed" for f in record["flows"])


@pytest.mark.parametrize("backend", ["refuses-sign-in", "down"])
def test_every_flow_fails_when_production_is_broken(sample: World, backend: str) -> None:
    run = sample.scenario(backend=backend).invoke("validate")
    assert run.returncode == 1, run.stdout + run.stderr  # a flow's own assertion failed: `fail`, not `error`
    record = sample.record()
    assert record["verdict"] == "fail"
    for flow in record["flows"]:
        assert flow["status"] == "failed", flow["flowFileName"]
        # each waits for loaded data (the empty state of a fresh user), which never comes
        assert "Element not found: Text matching regex: No exercises yet" in flow["errorSummary"], flow


def test_the_old_smoke_assertions_passed_without_a_sign_in(sample: World) -> None:
    """Why the flows changed: the static title is on screen whatever the server does (the model is honest
    about that), so a flow asserting only it passes against a backend that refuses sign-in."""
    sample.flow("title-only.yaml", tags=("production",), commands=(
        "- launchApp:\n    clearState: true\n- assertVisible: \"Exercises\"\n"))
    run = sample.scenario(backend="refuses-sign-in").invoke("validate")
    assert run.returncode == 1
    assert sample.flow_result("title-only.yaml")["status"] == "passed"
    assert sample.flow_result("launch-and-sign-in-anonymously.yml")["status"] == "failed"


def test_a_failed_add_shows_the_error_view(sample: World) -> None:
    """Sign-in works, then the server goes down: the add flow fails instead of asserting on stale data."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_sample_app", REPO / "tests" / "fakes" / "_sample_app.py")
    assert spec is not None and spec.loader is not None
    import sys

    sys.path.insert(0, str(REPO / "tests" / "fakes"))
    try:
        model = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(model)
    finally:
        sys.path.remove(str(REPO / "tests" / "fakes"))
    app = model.SampleApp("up")
    app.launch(clear_state=True)
    assert ("No exercises yet", "empty_state") in app.visible()
    app.tap("Add exercise", None)
    app.dialog = "Squats"
    app.backend = "down"
    app.tap("Save", None)
    shown = app.visible()
    assert ("Could not load your exercises", "error_state") in shown
    assert ("Squats", "exercise_row_name") not in shown and ("No exercises yet", "empty_state") not in shown

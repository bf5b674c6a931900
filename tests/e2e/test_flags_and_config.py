"""Flags and configuration that mean what users expect (issue 15): one meaning per short flag (`-e` is
Maestro's `--env` everywhere), invoke's own errors exit 2 with a did-you-mean, misspelled sections and
INVOKE_* variables refused, shared flags of a chain, paths from the project root, the production guard."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKES, REPO, World


def _project_tasks() -> Any:
    spec = importlib.util.spec_from_file_location("project_tasks", REPO / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flag_names() -> dict[str, dict[str, set[str]]]:
    """task -> long flag -> its short flags, from the real collection as invoke builds it."""
    ns = _project_tasks().ns
    found: dict[str, dict[str, set[str]]] = {}
    for name in ns.task_names:
        context = ns.to_contexts()
        for ctx in context:
            if ctx.name != name:
                continue
            found[name] = {}
            for arg in ctx.args.values():
                longs = [n for n in arg.names if len(n) > 1]
                found[name][longs[0]] = {n for n in arg.names if len(n) == 1}
    return found


def test_no_short_flag_means_two_things_across_tasks() -> None:
    meanings: dict[str, set[str]] = {}
    for flags in _flag_names().values():
        for long, shorts in flags.items():
            for letter in shorts:
                meanings.setdefault(letter, set()).add(long)
    clashes = {letter: longs for letter, longs in meanings.items() if len(longs) > 1}
    assert clashes == {}
    assert meanings["e"] == {"env"}  # Maestro's -e KEY=VALUE
    assert "c" not in meanings  # Maestro's -c is --continuous: no value-taking -c to swallow a flow path
    flags = _flag_names()
    assert flags["validate"]["env"] == flags["lint-flows"]["env"] == {"e"}
    assert flags["validate"]["exclude-tags"] == flags["lint-flows"]["exclude-tags"] == {"x"}
    assert {flags[t]["results-dir"] == {"r"} for t in flags if "results-dir" in flags[t]} == {True}
    assert flags["notify"]["dry-run"] == {"d"}  # what it always was: without it, -d is invoke's own --debug


@pytest.fixture
def one_flow(world: World) -> World:
    world.flow("login.yaml", commands='- launchApp\n- assertVisible: "Log in"\n')
    world.device().scenario()
    return world


def test_validate_e_sets_a_flow_variable_as_in_maestro(one_flow: World) -> None:
    run = one_flow.invoke("validate", "-e", "API_BASE_URL=https://api.example.com", "-e", "EXERCISE=Lunges")
    assert run.returncode == 0, run.stdout + run.stderr
    argv = one_flow.maestro_calls()[0]["argv"]
    assert {"API_BASE_URL=https://api.example.com", "EXERCISE=Lunges"} <= set(argv)
    assert [f["flowFileName"] for f in one_flow.record()["flows"]] == ["login.yaml"]


def test_a_mistyped_flag_is_exit_2_with_a_did_you_mean(one_flow: World) -> None:
    run = one_flow.invoke("validate", "--retires", "2")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "`invoke validate` has no flag --retires (did you mean --retries?)" in run.stderr
    assert one_flow.maestro_calls() == []


# ---- silent typos: a misspelled section or INVOKE_* variable is an error, as an unknown key is ----------

@pytest.mark.parametrize(("content", "message"), [
    ("validaton:\n  retries: 2\n", "unknown section `validaton:` (did you mean 'validation'?)"),
    ("notfy:\n  alert_on: always\n", "unknown section `notfy:` (did you mean 'notify'?)"),
    ("shipping:\n  speed: 2\n", "unknown section `shipping:`"),
    ("tasks:\n  exector_class: prodval.chain.ChainExecutor\n",
     "invoke has no setting `tasks.exector_class` (did you mean 'executor_class'?)"),
])
def test_a_misspelled_section_of_the_configuration_is_exit_2_with_a_suggestion(one_flow: World, content: str,
                                                                               message: str) -> None:
    config = one_flow.root / "ci.yaml"  # invoke -f: read like the project's invoke.yaml
    config.write_text(content)
    run = one_flow.invoke("-f", str(config), "validate")
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"ci.yaml: {message}" in run.stderr
    assert one_flow.maestro_calls() == []
    assert one_flow.record()["verdict"] == "error"  # the gate reads `error`, never a pass


def test_invokes_own_sections_are_still_accepted(one_flow: World) -> None:
    config = one_flow.root / "ci.yaml"
    config.write_text("run:\n  echo: false\nrunners: {}\ntimeouts:\n  command: null\nvalidation:\n  retries: 0\n")
    run = one_flow.invoke("-f", str(config), "validate")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(("variable", "message"), [
    ("INVOKE_VALIDATON_RETRIES", "INVOKE_VALIDATON_RETRIES is no setting: it would be ignored "
                                 "(did you mean INVOKE_VALIDATION_RETRIES?)"),
    ("INVOKE_VALIDATION_RETRYS", "(did you mean INVOKE_VALIDATION_RETRIES?)"),
    ("INVOKE_NOTIFY_ALERTON", "(did you mean INVOKE_NOTIFY_ALERT_ON?)"),
    ("INVOKE_EMULATR_API_LEVEL", "(did you mean INVOKE_EMULATOR_API_LEVEL?)"),
    ("INVOKE_BUILD_VARIANTS", "(did you mean INVOKE_BUILD_VARIANT?)"),
    ("INVOKE_VALIDATION_ENV_API_BASE_URL", "is not read: invoke sets a mapping's entry from the environment only"),
])
def test_a_misspelled_invoke_variable_is_exit_2_with_a_suggestion(one_flow: World, variable: str,
                                                                  message: str) -> None:
    run = one_flow.invoke("validate", **{variable: "2"})
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr
    assert one_flow.maestro_calls() == []


def test_invokes_own_and_unrelated_variables_are_left_alone(one_flow: World) -> None:
    run = one_flow.invoke("validate", INVOKE_RUN_ECHO="false", INVOKE_DEBUG="", INVOKE_OTHER_PROJECT_SETTING="1",
                          INVOKE_VALIDATION_RETRIES="0")
    assert run.returncode == 0, run.stdout + run.stderr


# ---- a chain: a setting's flag given once applies to every task that takes it ---------------------------

FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
BUILD_TOOLS = [t for t in ("aapt", "apksigner", "keytool") if shutil.which(t) is None]
BUILD_TOOLS += [] if FRAMEWORK_RES.is_file() else [str(FRAMEWORK_RES)]
IN_CI = bool(os.environ.get("CI"))  # read before the guard fixture clears it


@pytest.mark.skipif(bool(BUILD_TOOLS) and not IN_CI, reason=f"needs {', '.join(BUILD_TOOLS)} to build a real APK")
def test_results_dir_given_once_at_the_end_of_the_chain_is_the_chains_folder(world: World) -> None:
    shutil.copytree(REPO / "android", world.root / "android", ignore=shutil.ignore_patterns("build", ".gradle"))
    shutil.copy2(FAKES / "gradlew", world.root / "android" / "gradlew")
    shutil.copytree(REPO / ".maestro", world.flows, dirs_exist_ok=True)
    world.device().scenario()
    world.extra_env["FAKE_GRADLE_SCENARIO"] = str(world.root / "fake-gradle-scenario.json")
    chain = world.invoke("build-apk", "validate", "notify", "--results-dir", "out/prod")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert "chain: --results-dir out/prod applies to `build-apk`, `validate`, `notify`" in chain.stderr
    record = json.loads((world.root / "out" / "prod" / "results.json").read_text())
    assert list(record["stages"]) == ["build", "validate", "notify"]
    assert record["verdict"] == "pass" and record["apk"]["packageName"] == "com.example.exerciselog"
    assert not world.results.exists()  # nothing went to the default folder
    assert "no run record" not in chain.stderr


def test_a_shared_flag_after_any_task_reaches_the_others_and_own_switches_stay_put(one_flow: World) -> None:
    chain = one_flow.invoke("lint-flows", "validate", "-e", "EXERCISE=Lunges", "notify", "--dry-run", "-r", "out")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert "chain: --results-dir out applies to `validate`, `notify`" in chain.stderr
    assert "chain: --env EXERCISE=... applies to `lint-flows`, `validate`" in chain.stderr  # names, never values
    assert "Lunges" not in chain.stderr
    record = json.loads((one_flow.root / "out" / "results.json").read_text())
    assert list(record["stages"]) == ["validate"]  # --dry-run stayed notify's: it read the record, recorded nothing
    assert "dry run" in chain.stdout.lower() and "no run record" not in chain.stderr
    assert "EXERCISE=Lunges" in one_flow.maestro_calls()[0]["argv"]


def test_a_shared_flag_given_twice_with_different_values_is_refused_before_anything_runs(one_flow: World) -> None:
    chain = one_flow.invoke("validate", "--results-dir", "a", "notify", "--results-dir", "b")
    assert chain.returncode == 2, chain.stdout + chain.stderr
    assert ("--results-dir is given more than once in the chain, with different values (`validate` a, `notify` b)"
            in chain.stderr)
    assert "`invoke validate notify --results-dir a`" in chain.stderr
    assert one_flow.maestro_calls() == []
    # the same value twice is no ambiguity
    again = one_flow.invoke("validate", "--results-dir", "a", "notify", "--results-dir", "a")
    assert again.returncode == 0, again.stdout + again.stderr


# ---- the production guard: validation.require_tags, which nothing widens ---------------------------------

UNGUARDED_CLEANUP = "- launchApp\n- runFlow: subflows/cleanup.yaml\n"


@pytest.fixture
def tagged(world: World) -> World:
    """config.yaml's includeTags [production]; a production flow, one also tagged smoke, and a cleanup flow
    tagged only smoke whose cleanup is not guarded (it must never run against production)."""
    (world.flows / "config.yaml").write_text("flows:\n  - \"*\"\nincludeTags:\n  - production\n")
    (world.flows / "subflows").mkdir()
    (world.flows / "subflows" / "cleanup.yaml").write_text("appId: com.example.exerciselog\n---\n- launchApp\n")
    world.flow("prod.yaml", tags=("production",))
    world.flow("prod-smoke.yaml", tags=("production", "smoke"))
    world.flow("smoke-cleanup.yaml", tags=("smoke",), commands=UNGUARDED_CLEANUP)
    world.device().scenario()
    del world.extra_env["INVOKE_VALIDATION_REQUIRE_TAGS"]  # the project's invoke.yaml: require_tags: production
    return world


def test_the_project_requires_the_production_tag() -> None:
    import yaml

    assert yaml.safe_load((REPO / "invoke.yaml").read_text())["validation"]["require_tags"] == "production"


def test_include_tags_narrows_within_the_required_tags_and_never_widens(tagged: World) -> None:
    run = tagged.invoke("validate", "--include-tags", "smoke")
    assert run.returncode == 0, run.stdout + run.stderr
    record = tagged.record()
    assert [f["flowFileName"] for f in record["flows"]] == ["prod-smoke.yaml"]  # tagged both
    assert record["environment"]["requiredTags"] == ["production"]
    assert "1 never run in production: no required tag (production, validation.require_tags)" in run.stdout
    ran = {Path(a).name for c in tagged.maestro_calls() for a in c["argv"] if a.endswith(".yaml")}
    assert "smoke-cleanup.yaml" not in ran
    # without --include-tags: every production flow, never the smoke-only one
    assert tagged.invoke("validate").returncode == 0
    assert [f["flowFileName"] for f in tagged.record()["flows"]] == ["prod-smoke.yaml", "prod.yaml"]


def test_without_the_guard_maestros_or_semantics_would_run_the_cleanup_flow(tagged: World) -> None:
    # what the guard prevents: Maestro's --include-tags adds to config.yaml's includeTags (OR)
    run = tagged.invoke("validate", "--include-tags", "smoke", INVOKE_VALIDATION_REQUIRE_TAGS="")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "smoke-cleanup.yaml" in [f["flowFileName"] for f in tagged.record()["flows"]]


def test_a_single_flow_file_without_a_required_tag_is_refused(tagged: World) -> None:
    run = tagged.invoke("validate", "--flows", ".maestro/smoke-cleanup.yaml")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "1 flow(s) lack a required tag (production, validation.require_tags)" in run.stderr
    assert tagged.maestro_calls() == []


def test_lint_flows_says_why_a_flow_is_not_checked_and_checks_every_flow_a_run_selects(tagged: World) -> None:
    lint = tagged.invoke("lint-flows", "--include-tags", "smoke")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert ("not checked, as no production run selects them (they carry no tag of validation.require_tags: "
            "production): smoke-cleanup.yaml") in lint.stdout
    # where a run would select it (no guard), its unguarded cleanup is a problem, though it is not tagged production
    unguarded = tagged.invoke("lint-flows", "--include-tags", "smoke", INVOKE_VALIDATION_REQUIRE_TAGS="")
    assert unguarded.returncode == 2, unguarded.stdout + unguarded.stderr
    assert (".maestro/smoke-cleanup.yaml:6: cleanup (runFlow subflows/cleanup.yaml) in a flow a production run "
            "selects (tagged 'smoke', not 'production') is not guarded") in unguarded.stdout + unguarded.stderr


# ---- paths: the configuration's from the project root, the command line's from the current folder ------

@pytest.fixture
def own_project(one_flow: World) -> World:
    """The world as a project of its own (tasks.py and invoke.yaml beside .maestro), with a subfolder."""
    (one_flow.root / "tasks.py").symlink_to(REPO / "tasks.py")
    (one_flow.root / "invoke.yaml").write_text((REPO / "invoke.yaml").read_text())
    (one_flow.root / "android").mkdir()
    return one_flow


def invoke_in(world: World, folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`invoke ...` typed in `folder`: invoke finds the project's tasks.py above it, as it does for anyone."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=folder, env=world.env(**env),
                          capture_output=True, text=True, timeout=120)


def test_configured_paths_resolve_from_the_project_root_when_run_from_a_subfolder(own_project: World) -> None:
    android = own_project.root / "android"
    lint = invoke_in(own_project, android, "lint-flows")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Checking the flows in ../.maestro" in lint.stdout
    run = invoke_in(own_project, android, "validate", "notify", "--dry-run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert [f["flowFileName"] for f in own_project.record()["flows"]] == ["login.yaml"]  # build/validation at the root
    assert not (android / "build").exists()
    # an INVOKE_* variable is configuration too: from the project root
    moved = invoke_in(own_project, android, "validate", INVOKE_VALIDATION_RESULTS_DIR="out/env")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert (own_project.root / "out" / "env" / "results.json").is_file()


def test_build_apk_from_the_android_folder_runs_its_gradlew(own_project: World) -> None:
    """From android/ the build's project folder is '.': its ./gradlew is that file, not a `gradlew` on PATH."""
    android = own_project.root / "android"
    shutil.copy2(FAKES / "gradlew", android / "gradlew")
    scenario = own_project.root / "gradle-scenario.json"
    scenario.write_text(json.dumps({"fail": "compile"}))  # the build runs and fails: gradlew was found
    run = invoke_in(own_project, android, "build-apk", FAKE_GRADLE_SCENARIO=str(scenario))
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Couldn't find 'gradlew'" not in run.stderr and "What went wrong" in own_project.record()["stages"][
        "build"]["error"], run.stderr


def test_help_after_a_task_is_the_tasks_help(one_flow: World) -> None:
    for args in (("validate", "--help"), ("build-apk", "-h")):
        shown = one_flow.invoke(*args)
        assert shown.returncode == 0 and "Usage: inv[oke]" in shown.stdout, shown.stderr
    # a repeatable flag says what it takes (invoke shows no value for it)
    assert "KEY=VALUE (repeatable)" in " ".join(one_flow.invoke("validate", "--help").stdout.split())


def test_paths_typed_on_the_command_line_are_the_current_folders(own_project: World) -> None:
    android = own_project.root / "android"
    (android / "flows").mkdir()
    (android / "flows" / "here.yaml").write_text((own_project.flows / "login.yaml").read_text())
    run = invoke_in(own_project, android, "validate", "--flows", "flows", "--results-dir", "./out")
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads((android / "out" / "results.json").read_text())
    assert [f["flowFileName"] for f in record["flows"]] == ["here.yaml"]


def test_an_invoke_error_in_a_subfolder_records_it_in_the_projects_results_folder(own_project: World) -> None:
    android = own_project.root / "android"
    run = invoke_in(own_project, android, "validate", "--retires", "2")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "did you mean --retries?" in run.stderr
    assert own_project.record()["verdict"] == "error"  # the chain's folder, where notify and the workflow look
    assert not (android / "build").exists()


def test_notify_d_is_still_a_dry_run_and_invokes_own_flags_after_a_task_are_refused(one_flow: World) -> None:
    assert one_flow.invoke("validate").returncode == 0
    dry = one_flow.invoke("notify", "-d", SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T0/B0/dryRunSecret")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run" in dry.stdout.lower()
    assert "notify" not in one_flow.record()["stages"]  # nothing sent, nothing recorded
    # a letter the task lacks would be invoke's own flag (-c --collection, -w --warn-only): refused, exit 2
    for flag, core in (("-c", "--collection"), ("-w", "--warn-only")):
        run = one_flow.invoke("validate", flag, "x.yaml") if flag == "-c" else one_flow.invoke("validate", flag)
        assert run.returncode == 2, run.stdout + run.stderr
        assert f"`invoke validate` has no flag {flag}: after a task name invoke takes it as its own {core}" in run.stderr
        assert f"`invoke {flag} validate ...`" in run.stderr
    assert len(one_flow.maestro_calls()) == 1  # only the first validate ran a flow

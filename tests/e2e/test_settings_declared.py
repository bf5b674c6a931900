"""Each setting declared once: the cascade, what is derived from the declarations (invoke's defaults, the
tasks' --help, INVOKE_* names, the docs' tables), and cli's one error boundary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import World
from invoke.config import Config
from invoke.exceptions import Exit
from prodval import cli
from prodval.boundary import run_task
from prodval.errors import ConfigError, Interrupted
from prodval.runlock import FolderInUse
from prodval.settings import (
    SECTIONS,
    BuildSettings,
    EmulatorSettings,
    NotifySettings,
    Settings,
    declarations,
    docs_table,
    env_layer,
    invoke_configuration,
    load,
    load_build,
    load_emulator,
    load_notify,
    update_docs,
)

REPO = Path(__file__).resolve().parents[2]


# --- the cascade ---------------------------------------------------------------------------------------------

def test_every_section_resolves_defaults_then_config_then_flags() -> None:
    assert load({}, {}).flow_timeout == 600
    assert load({"flow_timeout": "30"}, {}).flow_timeout == 30
    assert load({"flow_timeout": "30"}, {"flow_timeout": "45"}).flow_timeout == 45
    assert load({"flow_timeout": "30"}, {"flow_timeout": None}).flow_timeout == 30  # a flag not given
    assert load_build({}, {}, {}).variant == "release"
    assert load_build({"variant": "debug"}, {}, {"variant": "productionRelease"}).variant == "productionRelease"
    assert load_build({}, {"results_dir": "a"}, {"results_dir": "b"}).results_dir == Path("b")
    assert load_notify({}, {}, {}).on == "failure"
    assert load_notify({"alert_on": "always"}, {}, {}).on == "always"
    assert load_notify({"alert_on": "always"}, {}, {"on": "failure"}).on == "failure"
    assert load_emulator({}, {}).boot_timeout == 600
    assert load_emulator({"boot_timeout": "90"}, {"boot_timeout": "120"}).boot_timeout == 120
    # a switch cannot say "no": --wipe absent leaves invoke.yaml's value
    assert load_emulator({"wipe": "true"}, {"wipe": False}).wipe is True
    assert load_emulator({}, {"wipe": True}).wipe is True


def test_name_value_settings_add_up_across_the_layers() -> None:
    settings = load({"env": {"A": "yaml", "B": "yaml"}}, {"env": ["B=flag", "C=flag"]})
    assert settings.flow_env == {"A": "yaml", "B": "flag", "C": "flag"}
    build = load_build({"properties": {"X": "1"}}, {}, {"property": ["Y=2"]})
    assert dict(build.properties) == {"X": "1", "Y": "2"}
    with pytest.raises(ConfigError, match=r"^validation.env in invoke.yaml: '1X' is not a valid variable name"):
        load({"env": {"1X": "a"}}, {})
    with pytest.raises(ConfigError, match=r"^--env: '1X' is not a valid variable name"):
        load({}, {"env": ["1X=a"]})
    with pytest.raises(ConfigError, match=r"^--property: 'NOPE' is not NAME=VALUE"):
        load_build({}, {}, {"property": ["NOPE"]})


def test_messages_name_the_setting_and_unknown_keys_get_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'notify.retires' \(did you mean 'retries'\?\)"):
        load_notify({"retires": 2}, {}, {})
    with pytest.raises(ConfigError, match=r"unknown setting 'build.timout' \(did you mean 'timeout'\?\)"):
        load_build({"timout": 2}, {}, {})
    with pytest.raises(ConfigError, match=r"emulator.count must be a whole number, got 'two'") as caught:
        load_emulator({"count": "two"}, {})
    assert caught.value.fix == "set count to a number such as 1"  # the declared default
    with pytest.raises(ConfigError, match=r"emulator.wipe must be true or false, got 'maybe'"):
        load_emulator({"wipe": "maybe"}, {})
    with pytest.raises(ConfigError, match=r"notify.alert_on \(--on\) must be one of failure, always, got 'alwys' "
                                          r"\(did you mean 'always'\?\)"):
        load_notify({}, {}, {"on": "alwys"})
    # build-apk and notify read the results folder from validation:, and nothing else of it
    assert load_notify({}, {"results_dir": "out", "retries": "many"}, {}).results_dir == Path("out")


def test_invoke_merges_invoke_yaml_and_the_environment_under_the_flags(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The registered keys are what lets invoke read INVOKE_<SECTION>_<KEY>; it hands over the raw text."""
    (tmp_path / "invoke.yaml").write_text("validation:\n  retries: 3\n  flow_timeout: 100\nemulator:\n  wipe: true\n")
    monkeypatch.setenv("INVOKE_VALIDATION_FLOW_TIMEOUT", "200")
    monkeypatch.setenv("INVOKE_EMULATOR_WIPE", "false")  # text "false", which invoke would cast to True
    monkeypatch.setenv("INVOKE_NOTIFY_DEADLINE", "50")
    config = Config(project_location=str(tmp_path))
    config.load_collection(invoke_configuration())
    config.load_project()
    config.load_shell_env()
    environ = dict(os.environ)
    settings = load(config.validation, {"retries": "4"}, environ)
    assert (settings.retries, settings.flow_timeout) == (4, 200)
    assert config.emulator.wipe is True  # invoke's cast of "false" to the type of invoke.yaml's value
    assert load_emulator(config.emulator, {}, environ).wipe is False  # the cascade reads the text itself
    assert load_emulator(config.emulator, {"wipe": True}, environ).wipe is True
    assert load_notify(config.notify, config.validation, {}, environ).deadline == 50
    assert env_layer(NotifySettings, {"INVOKE_NOTIFY_DEADLINE": "50", "INVOKE_NOTIFY_NOPE": "x"}) == {"deadline": "50"}


# --- derived from the declarations ---------------------------------------------------------------------------

def test_declarations_are_complete() -> None:
    for cls in SECTIONS:
        declared = declarations(cls)
        assert declared and len({s.key for s in declared}) == len(declared)
        for s in declared:
            assert s.section == cls.SECTION and s.help
            assert s.env_var == f"INVOKE_{cls.SECTION.upper()}_{s.key.upper()}"
            assert bool(s.flag) == bool(s.tasks), s.name
    assert cli.TASKS  # every task name a setting names as taking its flag is a task
    named = {task for cls in SECTIONS for s in declarations(cls) for task in s.tasks}
    assert named <= set(cli.TASKS)
    assert load({}, {}) == Settings() and load_build({}, {}, {}) == BuildSettings()
    assert load_notify({}, {}, {}) == NotifySettings() and load_emulator({}, {}) == EmulatorSettings()


def test_tasks_register_the_declared_keys_and_take_their_help_from_the_declarations() -> None:
    """tasks.py (in a child process: importing it installs invoke hooks) registers every declared key and
    derives every setting flag's --help, default included."""
    script = """
import inspect, json, sys
sys.path.insert(0, ".")
import tasks
out = {"configuration": tasks.ns.configuration(), "tasks": {}}
for name in tasks.ns.task_names:
    task = tasks.ns[name]
    params = [p for p in inspect.signature(task.body).parameters if p != "c"]
    out["tasks"][name] = {"help": task.help, "params": params}
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["configuration"] == invoke_configuration()
    assert all(value is None for value in found["configuration"]["validation"].values() if value != {})
    tasks: dict[str, Any] = found["tasks"]
    assert set(tasks) == set(cli.TASKS)
    for name, task in tasks.items():
        assert set(task["help"]) == set(task["params"]), name  # every flag documented, no help for a missing one
        for cls in SECTIONS:
            for s in declarations(cls):
                if name in s.tasks:
                    assert task["help"][s.flag] == s.flag_help(), (name, s.flag)
    assert tasks["validate"]["help"]["flow_timeout"].endswith("(default 600)")
    assert tasks["emulator.start"]["help"]["boot_timeout"].endswith("(default 600)")
    assert tasks["notify"]["help"]["on"].endswith("(default failure)")
    assert tasks["build-apk"]["help"]["abi"].endswith("(default x86_64)")
    assert tasks["validate"]["help"]["device"].endswith("(default: the single booted device)")


def test_the_docs_tables_are_the_declarations() -> None:
    """Each section's table sits between its markers in README.md or a docs/ file, exactly as generated."""
    assert update_docs(REPO, check=True) == []
    text = "".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))])
    for cls in SECTIONS:
        assert docs_table(cls) in text
        for s in declarations(cls):
            assert f"| `{s.key}` |" in docs_table(cls)


def test_a_drifted_or_missing_table_is_found_and_regenerated(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "configuration.md"
    page.write_text((REPO / "docs" / "configuration.md").read_text().replace(
        "| `flow_timeout` | `--flow-timeout` | `600` |", "| `flow_timeout` | `--flow-timeout` | `300` |"))
    [problem] = update_docs(tmp_path, check=True)
    assert "docs/configuration.md: a settings table differs from the declarations" in problem
    assert update_docs(tmp_path) == [] and update_docs(tmp_path, check=True) == []
    assert "| `flow_timeout` | `--flow-timeout` | `600` |" in page.read_text()

    # the block may move to another file (found by its markers, README.md included); exactly one place
    content = page.read_text()
    start, end = content.index("<!-- settings-table:notify:start -->"), content.index("<!-- settings-table:notify:end -->")
    block = content[start:end] + "<!-- settings-table:notify:end -->\n"
    page.write_text(content.replace(block, ""))
    [missing] = update_docs(tmp_path, check=True)
    assert "the `notify` settings table" in missing and "found in no file" in missing
    (tmp_path / "README.md").write_text("# Project\n\n" + block)
    assert update_docs(tmp_path, check=True) == []
    (tmp_path / "docs" / "again.md").write_text(block)
    [twice] = update_docs(tmp_path, check=True)
    assert "README.md, docs/again.md" in twice


# --- cli: one error boundary ---------------------------------------------------------------------------------

SECRET = "s3cret-T0ken-value"


@pytest.mark.parametrize("task", sorted(cli.TASKS))
def test_every_task_reports_a_bad_setting_once_with_secrets_masked(task: str, capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    """Whatever the task, a bad setting is one message titled with the task, exit 2, the secret masked."""
    environ = {"API_TOKEN": SECRET, "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(tmp_path / "out")}
    config = {"validation": {"results_dir": str(tmp_path), "devices": SECRET}, "build": {"timeout": SECRET},
              "notify": {"timeout": SECRET}, "emulator": {"count": SECRET}, "history": {"window": SECRET}}
    flags = {"shards": str(tmp_path)} if task == "merge-results" else {}
    if task in cli.VERDICT_TASKS:  # raised for the chain's boundary, which records it (as invoke runs it)
        with pytest.raises(Exit) as stopped:
            run_task(task, lambda: cli.TASKS[task](config, flags, environ), results_dir=tmp_path,
                     deployed_sha=None, environ=environ)
        assert stopped.value.code == 2
        assert json.loads((tmp_path / "results.json").read_text())["verdict"] == "error"
        assert "verdict=error" in (tmp_path / "out").read_text()
    else:
        assert cli.TASKS[task](config, flags, environ) == 2
    out = capsys.readouterr()
    text = "\n".join(line for line in (out.out + out.err).splitlines() if not line.startswith("::add-mask::"))
    assert SECRET not in text and "got '***'" in text
    assert f"title={task} stopped::" in text if task in cli.VERDICT_TASKS else f"title={task}::" in text


def test_what_the_chain_boundary_records_is_raised_the_rest_is_a_message(capsys: pytest.CaptureFixture[str],
                                                                           tmp_path: Path) -> None:
    """A task's own error is a message and its exit code; a signal, and any error of a task that decides a
    verdict (but another run's folder lock), is raised for boundary.run_task to record."""
    def bad(call: cli.Call) -> int:
        raise ConfigError("bad setting", fix="fix it")

    def interrupted(call: cli.Call) -> int:
        raise Interrupted("SIGTERM")

    def locked(call: cli.Call) -> int:
        raise FolderInUse("another run holds the folder", fix="wait")

    try:
        assert cli.entry("test-bad")(bad)({}, {}, {}) == 2
        assert "bad setting\n  fix: fix it" in capsys.readouterr().err
        with pytest.raises(Interrupted):
            cli.entry("test-interrupted")(interrupted)({}, {}, {})
    finally:
        cli.TASKS.pop("test-bad", None)
        cli.TASKS.pop("test-interrupted", None)
    saved = cli.TASKS["validate"]
    try:
        with pytest.raises(ConfigError, match="bad setting"):
            cli.entry("validate")(bad)({}, {}, {})
        assert cli.entry("validate")(locked)({}, {}, {}) == 2
        assert "another run holds the folder" in capsys.readouterr().err
    finally:
        cli.TASKS["validate"] = saved


def test_a_bad_invoke_variable_over_an_invoke_yaml_value_is_a_setting_error(world: World) -> None:
    """invoke.yaml sets flow_timeout: 300 (a number); invoke would cast the variable with int() and crash."""
    world.device().scenario()
    world.flow("a.yaml")
    run = world.invoke("validate", INVOKE_VALIDATION_FLOW_TIMEOUT="soon")
    assert run.returncode == 2, run.stderr
    assert "validation.flow_timeout must be a positive number, got 'soon'" in run.stderr
    assert "internal error" not in run.stderr and "Traceback" not in run.stderr
    assert not world.maestro_calls()

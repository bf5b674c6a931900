"""`prodval.host`: what the machine offers (KVM, Java, free disk), as facts without side effects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prodval.errors import ToolNotFound
from prodval.host import JAVA_FIX, find_java, free_gb, kvm_problem, kvm_usable


def test_kvm_problem_names_what_is_wrong_with_the_device(tmp_path: Path) -> None:
    device = tmp_path / "kvm"
    assert kvm_problem(device) == "does not exist"
    device.write_bytes(b"")
    device.chmod(0o600)
    assert kvm_problem(device) == ""
    assert kvm_usable(device, "linux")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any file, whatever its mode")
def test_kvm_problem_for_a_device_this_user_cannot_use(tmp_path: Path) -> None:
    device = tmp_path / "kvm"
    device.write_bytes(b"")
    device.chmod(0o400)
    assert kvm_problem(device) == "is not readable and writable by this user"
    assert not kvm_usable(device, "linux")


def test_free_space_is_measured_where_the_folder_will_be(tmp_path: Path) -> None:
    folder, free = free_gb(tmp_path / "not" / "yet" / "made")
    assert folder == tmp_path and free > 0
    assert free_gb(tmp_path)[0] == tmp_path


def test_java_from_java_home_else_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    home = tmp_path / "jdk"
    with pytest.raises(ToolNotFound) as caught:
        find_java({"JAVA_HOME": str(home)})
    assert caught.value.fix == JAVA_FIX
    assert "$JAVA_HOME/bin" in caught.value.message and "PATH" in caught.value.message
    with pytest.raises(ToolNotFound) as caught:
        find_java({})
    assert "$JAVA_HOME (unset)" in caught.value.message
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    assert find_java({"JAVA_HOME": str(home)}) == java
    on_path = tmp_path / "empty" / "java"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert find_java({}) == on_path

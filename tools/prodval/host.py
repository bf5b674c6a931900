"""What this machine offers the emulator and the tools: KVM, Java, Python, free disk space.

Facts only: each function looks and answers, nothing here starts, installs or records anything.
`doctor` turns the answers into rows with their fixes; `emulator` decides `-accel off` from `kvm_usable`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from .commands import find_tool

KVM_DEVICE = Path("/dev/kvm")
KVM_FIX = ("give the runner access to /dev/kvm: on GitHub-hosted Linux runners add the udev rule step "
           "(KERNEL==\"kvm\", MODE=\"0666\"; see docs/devices.md), elsewhere `sudo usermod -aG kvm $USER`")
MIN_PYTHON = (3, 11)
MIN_JAVA = 17  # Maestro 2.x and the SDK command-line tools
JAVA_FIX = ("install a JDK 17 or newer (`sudo apt-get install openjdk-17-jdk-headless`, or actions/setup-java "
            "with java-version: 17) and set JAVA_HOME")
MIN_FREE_GB = 10.0  # a system image, an AVD's data partition and its snapshots


def kvm_usable(device: Path = KVM_DEVICE, platform: str = sys.platform) -> bool:
    """Linux needs read and write access to /dev/kvm for an accelerated emulator; other systems use their own."""
    if not platform.startswith("linux"):
        return True
    return device.exists() and os.access(device, os.R_OK | os.W_OK)


def kvm_problem(device: Path = KVM_DEVICE) -> str:
    """Why `device` cannot accelerate the emulator, in words that follow its path ('' when it can)."""
    if not device.exists():
        return "does not exist"
    if not os.access(device, os.R_OK | os.W_OK):
        return "is not readable and writable by this user"
    return ""


def java_major(text: str) -> int | None:
    """`java -version`'s major version: 'openjdk version "17.0.15"' -> 17, 'java version "1.8.0_411"' -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java(environ: Mapping[str, str]) -> Path:
    """$JAVA_HOME/bin/java when JAVA_HOME is set, else `java` on PATH; ToolNotFound with JAVA_FIX."""
    java_home = environ.get("JAVA_HOME")
    return find_tool("java", [("$JAVA_HOME/bin" if java_home else "$JAVA_HOME (unset)",
                               Path(java_home, "bin", "java") if java_home else None), ("PATH", "java")], JAVA_FIX)


def free_gb(folder: Path) -> tuple[Path, float]:
    """The free space, in GB, of the file system `folder` will be on: measured at its nearest existing
    ancestor (the folder itself when it exists), which is returned with it."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder, shutil.disk_usage(folder).free / 1024**3

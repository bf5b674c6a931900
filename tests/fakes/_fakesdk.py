"""The Android SDK layout shared by the fake `sdkmanager`, `avdmanager` and `emulator` (stdlib only).

An installed SDK package is a folder holding a `package.xml` whose `<localPackage path="...">` names
it, as the real SDK manager writes it. The fakes find the SDK root as the real tools do: `sdkmanager`
and `avdmanager` from their own location (`<root>/cmdline-tools/<version>/bin/<tool>`, override
`--sdk_root=`), the emulator from `<root>/emulator/emulator`; each falls back to $ANDROID_HOME, then
$ANDROID_SDK_ROOT, when it does not sit in an SDK.
"""

from __future__ import annotations

import os
import re
from xml.sax.saxutils import escape

FAKES = os.path.dirname(os.path.realpath(__file__))

# license id -> the text sdkmanager shows (abridged) and the hash line written to licenses/<id>
LICENSES = {
    "android-sdk-license": ("Terms and Conditions\n\nThis is the Android Software Development Kit License "
                            "Agreement (fake, abridged).", "24333f8a63b6825ea9c5514f83c2829b004d1fee"),
    "android-sdk-preview-license": ("This is the Android SDK Preview License Agreement (fake, abridged).",
                                    "84831b9409646a918e30573bab4c9c91346d8abd"),
    "android-googletv-license": ("Terms and Conditions (Google TV, fake, abridged).",
                                 "601085b94cd77f0b54ff86406957099ebe79c4d6"),
}

TAG_DISPLAY = {"default": "Default Android System Image", "google_apis": "Google APIs",
               "google_apis_playstore": "Google Play", "google_atd": "Google APIs ATD"}
ABI_DISPLAY = {"x86_64": "Intel x86_64 Atom", "x86": "Intel x86 Atom", "arm64-v8a": "ARM 64 v8a",
               "armeabi-v7a": "ARM EABI v7a"}
SYSTEM_IMAGE = re.compile(r"^system-images;android-(\d+);([a-z_]+);(x86_64|x86|arm64-v8a|armeabi-v7a)$")


def package_info(path: str) -> dict | None:
    """What the fake remote repository knows about a package path; None if it has no such package."""
    if path == "platform-tools":
        return {"version": "35.0.2", "display": "Android SDK Platform-Tools", "license": "android-sdk-license"}
    if path == "emulator":
        return {"version": "35.1.20", "display": "Android Emulator", "license": "android-sdk-license"}
    if path == "cmdline-tools;latest":
        return {"version": "16.0", "display": "Android SDK Command-line Tools (latest)",
                "license": "android-sdk-license"}
    match = SYSTEM_IMAGE.match(path)
    if match and 21 <= int(match.group(1)) <= 35 and match.group(2) in TAG_DISPLAY:
        tag, abi = match.group(2), match.group(3)
        name = f"{TAG_DISPLAY[tag]} {ABI_DISPLAY[abi]} System Image"
        return {"version": "13", "display": name, "license": "android-sdk-license", "api": match.group(1),
                "tag": tag, "abi": abi}
    return None


def package_dir(root: str, path: str) -> str:
    if path == "cmdline-tools;latest":
        return os.path.join(root, "cmdline-tools", "latest")
    return os.path.join(root, *path.split(";"))


def _link(target: str, link: str) -> None:
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(target, link)


def install_package(root: str, path: str) -> str:
    """Lay the package out under `root` as sdkmanager would; returns its folder."""
    info = package_info(path)
    if info is None:
        raise KeyError(path)
    folder = package_dir(root, path)
    os.makedirs(folder, exist_ok=True)
    if path == "platform-tools":
        _link(os.path.join(FAKES, "adb"), os.path.join(folder, "adb"))
    elif path == "emulator":
        _link(os.path.join(FAKES, "emulator"), os.path.join(folder, "emulator"))
    elif path == "cmdline-tools;latest":
        for tool in ("sdkmanager", "avdmanager"):
            _link(os.path.join(FAKES, tool), os.path.join(folder, "bin", tool))
    else:  # a system image: what avdmanager and the emulator read
        for name, data in (("system.img", b"\0" * 64), ("vendor.img", b"\0" * 16), ("ramdisk.img", b"\0" * 16),
                           ("kernel-ranchu", b"\0" * 16), ("userdata.img", b"\0" * 32)):
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(data)
        with open(os.path.join(folder, "build.prop"), "w", encoding="utf-8") as fh:
            fh.write(f"ro.build.version.sdk={info['api']}\nro.product.cpu.abi={info['abi']}\n")
        with open(os.path.join(folder, "source.properties"), "w", encoding="utf-8") as fh:
            fh.write(f"AndroidVersion.ApiLevel={info['api']}\nPkg.Revision={info['version']}\n"
                     f"SystemImage.Abi={info['abi']}\nSystemImage.TagId={info['tag']}\n"
                     f"SystemImage.TagDisplay={TAG_DISPLAY[info['tag']]}\n")
    with open(os.path.join(folder, "package.xml"), "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                 '<ns2:repository xmlns:ns2="http://schemas.android.com/repository/android/common/02">'
                 f'<license id="{info["license"]}" type="text">fake</license>'
                 f'<localPackage path="{escape(path)}" obsolete="false">'
                 f'<revision><major>{info["version"].split(".")[0]}</major></revision>'
                 f'<display-name>{escape(info["display"])}</display-name>'
                 f'<uses-license ref="{info["license"]}"/></localPackage></ns2:repository>\n')
    return folder


def installed_packages(root: str) -> dict[str, str]:
    """package path -> folder, for every package.xml under `root` (as the SDK's local repository)."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("licenses", "avd")]
        if "package.xml" in files:
            with open(os.path.join(folder, "package.xml"), encoding="utf-8") as fh:
                match = re.search(r'<localPackage path="([^"]+)"', fh.read())
            if match:
                found[match.group(1).replace("&amp;", "&")] = folder
            dirs[:] = []
    return found


def accepted_licenses(root: str) -> set[str]:
    folder = os.path.join(root, "licenses")
    if not os.path.isdir(folder):
        return set()
    return {name for name in os.listdir(folder) if name in LICENSES}


def accept_license(root: str, license_id: str) -> None:
    os.makedirs(os.path.join(root, "licenses"), exist_ok=True)
    with open(os.path.join(root, "licenses", license_id), "w", encoding="utf-8") as fh:
        fh.write("\n" + LICENSES[license_id][1])


def root_from_tool(argv0: str, environ: dict[str, str] | os._Environ[str]) -> str | None:
    """`<root>/cmdline-tools/<version>/bin/<tool>` -> root; else $ANDROID_HOME, then $ANDROID_SDK_ROOT."""
    here = os.path.dirname(os.path.abspath(argv0))
    if os.path.basename(here) == "bin" and os.path.basename(os.path.dirname(os.path.dirname(here))) == "cmdline-tools":
        return os.path.dirname(os.path.dirname(os.path.dirname(here)))
    return environ.get("ANDROID_HOME") or environ.get("ANDROID_SDK_ROOT") or None


def avdmanager_avd_home(environ: dict[str, str] | os._Environ[str]) -> str:
    """Where avdmanager writes AVDs: $ANDROID_AVD_HOME, $ANDROID_USER_HOME/avd, ~/.android/avd when
    ~/.android exists, else $XDG_CONFIG_HOME/.android/avd (the ubuntu-24.04 trap: the emulator does
    not look there; actions/runner-images#11482)."""
    if environ.get("ANDROID_AVD_HOME"):
        return environ["ANDROID_AVD_HOME"]
    if environ.get("ANDROID_USER_HOME"):
        return os.path.join(environ["ANDROID_USER_HOME"], "avd")
    home = environ.get("HOME", os.path.expanduser("~"))
    if os.path.isdir(os.path.join(home, ".android")):
        return os.path.join(home, ".android", "avd")
    xdg = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(xdg, ".android", "avd")


def emulator_avd_dirs(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """Where the emulator looks: $ANDROID_AVD_HOME, $ANDROID_SDK_HOME/avd, $HOME/.android/avd."""
    dirs = []
    if environ.get("ANDROID_AVD_HOME"):
        dirs.append(environ["ANDROID_AVD_HOME"])
    if environ.get("ANDROID_SDK_HOME"):
        dirs.append(os.path.join(environ["ANDROID_SDK_HOME"], "avd"))
    dirs.append(os.path.join(environ.get("HOME", os.path.expanduser("~")), ".android", "avd"))
    return dirs


def read_ini(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                values[key.strip()] = value.strip()
    return values

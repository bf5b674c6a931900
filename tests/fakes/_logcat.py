"""What an app's crash and an ANR look like in `logcat -v threadtime` (for the fake maestro's scripted
"logcat" events; Python 3.11 stdlib only).

The texts follow AOSP:
- an uncaught exception: `RuntimeInit.logUncaught` logs "FATAL EXCEPTION: <thread>\\nProcess: <name>, PID: <pid>"
  with the throwable through `Log.printlns(LOG_ID_CRASH, ERROR, "AndroidRuntime", ...)`: one E line per line
  of the message and of the stack trace (`\\tat ...` frames, `Caused by: ...`, `\\t... N more`), in the crash
  buffer (logcat prints "--------- beginning of crash" before its first entry), from the app's pid and the
  crashing thread's tid; then the process kills itself ("Sending signal. PID: N SIG: 9") and system_server
  notes the death.
- an ANR: `ProcessErrorStateRecord.appNotResponding` builds "ANR in <process> (<short component>)\\nPID: N\\n
  Reason: ...\\nParent: ...\\nErrorId: ...\\nFrozen: false\\n" + load and CPU usage and logs it with one
  `Slog.e("ActivityManager", ...)` from system_server: logcat prints each line with the same prefix.
"""

from __future__ import annotations

import uuid
import zlib

import _fakestate as fs

SYSTEM_SERVER_PID, ANR_TID, AM_TID = 562, 601, 587


def app_pid(process: str) -> int:
    """A stable pid for an app's process (as if it had been started once)."""
    return 4000 + zlib.crc32(process.encode()) % 5000


def _frames(package: str) -> list[str]:
    return [f"\tat {package}.ExerciseListViewModel.add(ExerciseListViewModel.kt:42)",
            f"\tat {package}.MainActivity.onCreate$lambda$0(MainActivity.kt:31)",
            "\tat android.view.View.performClick(View.java:7659)",
            "\tat android.view.View.performClickInternal(View.java:7636)",
            "\tat android.os.Handler.handleCallback(Handler.java:958)",
            "\tat android.os.Handler.dispatchMessage(Handler.java:99)",
            "\tat android.os.Looper.loopOnce(Looper.java:205)",
            "\tat android.os.Looper.loop(Looper.java:294)",
            "\tat android.app.ActivityThread.main(ActivityThread.java:8177)",
            "\tat java.lang.reflect.Method.invoke(Native Method)",
            "\tat com.android.internal.os.RuntimeInit$MethodAndArgsCaller.run(RuntimeInit.java:552)",
            "\tat com.android.internal.os.ZygoteInit.main(ZygoteInit.java:971)"]


def crash_lines(process: str, exception: str, *, caused_by: str = "", thread: str = "main") -> list[str]:
    """The FATAL EXCEPTION block of `process` (an app's package, or `package:suffix`), its self-kill and
    system_server's note of its death."""
    pid = app_pid(process)
    tid = pid if thread == "main" else pid + 17
    package = process.split(":", 1)[0]
    trace = [exception, *_frames(package)]
    if caused_by:
        trace += [f"Caused by: {caused_by}", f"\tat {package}.data.Cart.first(Cart.kt:12)", "\t... 12 more"]
    lines = fs.logcat_lines(pid, tid, "E", "AndroidRuntime", f"FATAL EXCEPTION: {thread}\nProcess: {process}, PID: {pid}")
    for line in trace:  # Log.printlns: one entry per line
        lines += fs.logcat_lines(pid, tid, "E", "AndroidRuntime", line)
    lines += fs.logcat_lines(pid, tid, "I", "Process", f"Sending signal. PID: {pid} SIG: 9")
    lines += fs.logcat_lines(SYSTEM_SERVER_PID, AM_TID, "W", "ActivityTaskManager",
                             f"  Force finishing activity {package}/.MainActivity")
    lines += fs.logcat_lines(SYSTEM_SERVER_PID, AM_TID, "I", "ActivityManager",
                             f"Process {process} (pid {pid}) has died: fg  TOP ")
    return lines


def anr_lines(process: str, reason: str) -> list[str]:
    """system_server's "ANR in" entry for `process`, with its PID, Reason and the usual tail."""
    pid = app_pid(process)
    package = process.split(":", 1)[0]
    component = f"{package}/.MainActivity"
    message = "\n".join([
        f"ANR in {process} ({component})", f"PID: {pid}", f"Reason: {reason}", f"Parent: {component}",
        f"ErrorId: {uuid.uuid4()}", "Frozen: false", "Load: 1.21 / 0.98 / 0.75",
        "----- Output from /proc/pressure/memory -----",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0", "full avg10=0.00 avg60=0.00 avg300=0.00 total=0",
        "----- End output from /proc/pressure/memory -----", "",
        "CPU usage from 0ms to 5237ms later (2026-01-01 00:00:00.000 to 2026-01-01 00:00:05.237):",
        f"  41% {pid}/{process}: 38% user + 3.1% kernel / faults: 1207 minor",
        f"  12% {SYSTEM_SERVER_PID}/system_server: 8.2% user + 4.1% kernel / faults: 3301 minor"])
    return fs.logcat_lines(SYSTEM_SERVER_PID, ANR_TID, "E", "ActivityManager", message)

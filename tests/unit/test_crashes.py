"""crashes.py: the app's crash or ANR read from `logcat -v threadtime` text, and an attempt's window of it."""

from __future__ import annotations

import threading
from pathlib import Path

from prodval.crashes import (
    CRASH_FILE,
    MARK_TAG,
    attempt_crash,
    attempt_log,
    find_crashes,
    is_app_process,
    parse_line,
    wait_for_text,
)

APP = "com.example.exerciselog"

# As a device prints them (AOSP RuntimeInit.logUncaught through Log.printlns, one entry per line; the crash
# buffer's divider; another process's line interleaved; the self-kill from the same thread after the block).
APP_CRASH = """\
--------- beginning of crash
11-30 06:12:01.101  4821  4821 E AndroidRuntime: FATAL EXCEPTION: main
11-30 06:12:01.101  4821  4821 E AndroidRuntime: Process: com.example.exerciselog, PID: 4821
11-30 06:12:01.101  4821  4821 E AndroidRuntime: java.lang.IllegalStateException: Cart is empty
11-30 06:12:01.101  4821  4821 E AndroidRuntime: \tat com.example.exerciselog.Cart.checkout(Cart.kt:42)
11-30 06:12:01.102   562   590 I WindowManager: Changing focus from Window{1 u0 com.example.exerciselog}
11-30 06:12:01.102  4821  4821 E AndroidRuntime: \tat android.os.Handler.dispatchMessage(Handler.java:99)
11-30 06:12:01.102  4821  4821 E AndroidRuntime: Caused by: java.util.NoSuchElementException: List is empty.
11-30 06:12:01.102  4821  4821 E AndroidRuntime: \t... 12 more
11-30 06:12:01.103  4821  4821 I Process : Sending signal. PID: 4821 SIG: 9
11-30 06:12:01.110   562   587 I ActivityManager: Process com.example.exerciselog (pid 4821) has died: fg  TOP
"""

OTHER_CRASH = """\
11-30 06:12:02.201  1987  1987 E AndroidRuntime: FATAL EXCEPTION: main
11-30 06:12:02.201  1987  1987 E AndroidRuntime: Process: com.android.systemui, PID: 1987
11-30 06:12:02.201  1987  1987 E AndroidRuntime: java.lang.NullPointerException: Attempt to invoke a virtual method
11-30 06:12:02.201  1987  1987 E AndroidRuntime: \tat com.android.systemui.Dependency.get(Dependency.java:512)
11-30 06:12:02.203  1987  1987 I Process : Sending signal. PID: 1987 SIG: 9
"""

# ProcessErrorStateRecord.appNotResponding: one Slog.e of several lines, printed with one prefix each.
ANR = """\
11-30 06:13:10.500   562   601 E ActivityManager: ANR in com.example.exerciselog (com.example.exerciselog/.MainActivity)
11-30 06:13:10.500   562   601 E ActivityManager: PID: 4821
11-30 06:13:10.500   562   601 E ActivityManager: Reason: Input dispatching timed out (Waited 5001ms for MotionEvent)
11-30 06:13:10.500   562   601 E ActivityManager: Parent: com.example.exerciselog/.MainActivity
11-30 06:13:10.500   562   601 E ActivityManager: Frozen: false
11-30 06:13:10.500   562   601 E ActivityManager:
11-30 06:13:10.500   562   601 E ActivityManager: CPU usage from 0ms to 5237ms later:
11-30 06:13:10.612   562   601 I ActivityManager: Killing 4821:com.example.exerciselog/u0a190 (adj 0): user request after error
"""


def test_parse_a_threadtime_line() -> None:
    line = parse_line("08-01 10:15:01.007  4321  4399 W View    : requestLayout() improperly called during layout\n")
    assert line is not None
    assert (line.time, line.pid, line.tid, line.level, line.tag) == ("08-01 10:15:01.007", 4321, 4399, "W", "View")
    assert line.message == "requestLayout() improperly called during layout"
    assert parse_line("--------- beginning of crash") is None
    assert parse_line("05-01 I App: no pid or tid") is None


def test_the_apps_fatal_exception_is_found_with_its_whole_block() -> None:
    [crash] = find_crashes("11-30 06:12:00.000  4000  4000 I Example : before\n" + APP_CRASH, APP)
    assert crash.kind == "crash" and crash.process == APP
    assert crash.summary == "java.lang.IllegalStateException: Cart is empty"
    assert crash.lines[0].endswith("E AndroidRuntime: FATAL EXCEPTION: main")
    assert crash.lines[-1].endswith("E AndroidRuntime: \t... 12 more")
    assert any("Caused by: java.util.NoSuchElementException: List is empty." in line for line in crash.lines)
    assert not any("WindowManager" in line or "Sending signal" in line or "before" in line for line in crash.lines)
    assert crash.text == "\n".join(crash.lines) + "\n"


def test_another_process_crash_is_not_the_apps() -> None:
    assert find_crashes(OTHER_CRASH, APP) == []
    [crash] = find_crashes(OTHER_CRASH + APP_CRASH, APP)
    assert crash.process == APP
    [other] = find_crashes(OTHER_CRASH, "com.android.systemui")
    assert other.summary == "java.lang.NullPointerException: Attempt to invoke a virtual method"


def test_the_apps_own_named_processes_count_and_look_alike_packages_do_not() -> None:
    assert is_app_process(APP, APP) and is_app_process(APP + ":sync", APP)
    assert not is_app_process(APP + ".debug", APP) and not is_app_process("com.example", APP)
    assert not is_app_process(APP, "")
    sync = APP_CRASH.replace(f"Process: {APP}, PID", f"Process: {APP}:sync, PID")
    assert [c.process for c in find_crashes(sync, APP)] == [APP + ":sync"]


def test_an_anr_of_the_app_says_its_reason() -> None:
    [anr] = find_crashes(ANR, APP)
    assert anr.kind == "anr" and anr.process == APP
    assert anr.summary == f"ANR in {APP}: Input dispatching timed out (Waited 5001ms for MotionEvent)"
    assert len(anr.lines) == 7  # the entry's lines; the later "Killing" entry is not part of it
    assert find_crashes(ANR, "com.android.systemui") == []
    assert find_crashes(ANR.replace(APP + " (", "com.other.app ("), APP) == []


def test_a_block_split_across_the_attempt_end_belongs_to_the_attempt_it_started_in() -> None:
    text = APP_CRASH
    header = text.index("FATAL EXCEPTION")
    cut = text.index("\n", text.index("Process: com.example")) + 1  # the window ends after the Process line
    [crash] = find_crashes(text, APP, end=cut)
    assert crash.summary == "java.lang.IllegalStateException: Cart is empty"  # read on past the end
    assert any("... 12 more" in line for line in crash.lines)
    # the same block seen from the next attempt: its header is before that window, its tail is not a crash
    assert find_crashes(text, APP, start=cut) == []
    assert find_crashes(text, APP, start=text.rindex("\n", 0, header) + 1)  # a window that holds the header
    assert find_crashes(text, APP, end=text.rindex("\n", 0, header) + 1) == []  # one that ends before it


def test_redacted_lines_keep_their_mask() -> None:
    masked = APP_CRASH.replace("Cart is empty", "token *** rejected")
    [crash] = find_crashes(masked, APP)
    assert crash.summary == "java.lang.IllegalStateException: token *** rejected"
    assert "***" in crash.text


def test_a_fatal_exception_without_a_message_line_still_names_the_process() -> None:
    text = ("11-30 06:12:01.101  4821  4821 E AndroidRuntime: FATAL EXCEPTION: main\n"
            "11-30 06:12:01.101  4821  4821 E AndroidRuntime: Process: com.example.exerciselog, PID: 4821\n")
    [crash] = find_crashes(text, APP)
    assert crash.summary == f"FATAL EXCEPTION in {APP}"


class FakeMarks:
    """A device's shell that logs each mark and a capture that writes it at once (it "caught up")."""

    def __init__(self, capture: Path | None) -> None:
        self.capture, self.calls = capture, []  # type: ignore[var-annotated]
        self.open = capture is not None

    def mark(self, serial: str, message: str) -> bool:
        self.calls.append((serial, MARK_TAG, message))
        if self.capture is None:
            return False  # the device is gone
        with open(self.capture, "a", encoding="utf-8") as fh:
            fh.write(f"11-30 06:20:00.000  7000  7000 I {MARK_TAG:<8}: {message}\n")
        return True

    def alive(self, serial: str) -> bool:
        return self.open


def test_the_attempt_window_ends_at_its_mark(tmp_path: Path) -> None:
    capture = tmp_path / "logcat.txt"
    capture.write_text("11-30 06:00:00.000     1     1 I Before  : an earlier attempt's line\n")
    start = capture.stat().st_size
    with open(capture, "a", encoding="utf-8") as fh:
        fh.write(APP_CRASH)
    adb = FakeMarks(capture)
    log = attempt_log(adb, "emulator-5554", capture, start, "cart.yaml.1")  # type: ignore[arg-type]
    text, end = log.text, log.end
    assert log.logged and log.seen and not log.lost
    [(serial, tag, message)] = adb.calls
    assert (serial, tag) == ("emulator-5554", MARK_TAG) and message.startswith("end-of-attempt cart.yaml.1 ")
    assert text.startswith("--------- beginning of crash") and "earlier attempt" not in text
    assert text[end:].split("\n", 1)[0].endswith(message)
    # what is logged after the mark (the next attempt's) is not in this attempt's window
    folder = tmp_path / "attempt-1"
    crash, _ = attempt_crash(adb, "emulator-5554", capture, start, APP, "cart.yaml.1", folder)  # type: ignore[arg-type]
    assert crash is not None and (folder / CRASH_FILE).read_text() == crash.text
    later = capture.stat().st_size
    with open(capture, "a", encoding="utf-8") as fh:
        fh.write(APP_CRASH.replace("FATAL EXCEPTION", "not fatal"))
    assert attempt_crash(adb, "emulator-5554", capture, later, APP, "x", tmp_path / "a2")[0] is None  # type: ignore[arg-type]
    assert not (tmp_path / "a2").exists()


def test_without_a_mark_the_window_is_what_the_capture_wrote(tmp_path: Path) -> None:
    capture = tmp_path / "logcat.txt"
    capture.write_text(APP_CRASH)
    # catch_up is an hour: a wait for a mark that was never logged would hang the test
    log = attempt_log(FakeMarks(None), "emulator-5554", capture, 0, "x", catch_up=3600)  # type: ignore[arg-type]
    assert (log.text, log.end, log.logged, log.lost) == (APP_CRASH, len(APP_CRASH), False, False)
    none = attempt_log(FakeMarks(None), "emulator-5554", tmp_path / "none.txt", 0, "x")  # type: ignore[arg-type]
    assert (none.text, none.end, none.logged) == ("", 0, False)


class DeafCapture(FakeMarks):
    """The device takes the mark, the capture never writes it (its `adb logcat` died)."""

    def mark(self, serial: str, message: str) -> bool:
        self.calls.append((serial, MARK_TAG, message))
        self.open = True
        return True


class ClosedShell(DeafCapture):
    """The mark was written to a shell whose session then ended (the device went offline)."""

    def alive(self, serial: str) -> bool:
        return False


def test_a_capture_that_stopped_is_told_apart(tmp_path: Path) -> None:
    capture = tmp_path / "logcat.txt"
    capture.write_text(APP_CRASH)
    log = attempt_log(DeafCapture(None), "emulator-5554", capture, 0, "x", catch_up=0.0)  # type: ignore[arg-type]
    assert log.logged and not log.seen and log.lost and log.end == len(APP_CRASH)
    crash, _ = attempt_crash(DeafCapture(None), "emulator-5554", capture, 0, APP, "x", tmp_path / "a",  # type: ignore[arg-type]
                             catch_up=0.0)
    assert crash is not None  # what it captured is still read


def test_a_shell_that_ended_took_the_mark_with_it(tmp_path: Path) -> None:
    capture = tmp_path / "logcat.txt"
    capture.write_text(APP_CRASH)
    # catch_up is an hour: the wait ends because the shell is gone, not at the bound
    log = attempt_log(ClosedShell(None), "emulator-5554", capture, 0, "x", catch_up=3600)  # type: ignore[arg-type]
    assert not log.logged and not log.lost and log.text == APP_CRASH


def test_the_wait_follows_the_capture_as_it_writes(tmp_path: Path) -> None:
    capture = tmp_path / "logcat.txt"
    capture.write_text("first line\n")
    looked = threading.Event()

    def clock() -> float:  # the waiter looks at the file, then asks the time: the writer goes on then
        looked.set()
        return 0.0

    def writer() -> None:
        looked.wait(30)
        with open(capture, "a", encoding="utf-8") as fh:
            fh.write("second line\nthe mark\n")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        data = wait_for_text(capture, len("first line\n"), b"the mark", timeout=3600, poll=0.001, clock=clock)
    finally:
        thread.join(30)
    assert data == b"second line\nthe mark\n"
    assert wait_for_text(tmp_path / "gone.txt", 0, b"x", timeout=3600) == b""


def test_a_mark_split_between_two_reads_is_found(tmp_path: Path) -> None:
    capture = tmp_path / "logcat.txt"
    capture.write_text("first line\nthe ma")
    calls = []

    def clock() -> float:  # after the first read, the capture writes the rest of the line
        calls.append(1)
        if len(calls) == 2:
            with open(capture, "a", encoding="utf-8") as fh:
                fh.write("rk\nlater\n")
        return 0.0

    data = wait_for_text(capture, 0, b"the mark", timeout=3600, poll=0.001, clock=clock)
    assert data.startswith(b"first line\nthe mark\n")

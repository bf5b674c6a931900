"""The screen recordings' pure parts: when a segment chain goes on, the run's disk budget, what counts as
a finished MP4, the names on the device and in the record (no process, no fake)."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest
from prodval.alerts.message import FlowLine
from prodval.recording import (
    MISSING_EXIT,
    SEGMENT_SECONDS,
    Budget,
    VideoPolicy,
    is_complete_mp4,
    remote_path,
    segment_end,
    videos_of,
)

NOT_FOUND = "/system/bin/sh: screenrecord: inaccessible or not found\n"


# --- the chain of segments -------------------------------------------------------------------------------

def test_a_segment_that_reached_its_time_limit_is_followed_by_the_next() -> None:
    assert segment_end(0, SEGMENT_SECONDS + 0.4, False, "") == ""


def test_a_segment_we_stopped_ends_the_chain_as_stopped_whatever_its_exit() -> None:
    assert segment_end(0, 12.0, True, "") == "stopped"
    assert segment_end(143, 12.0, True, "") == "stopped"  # the caller checks the file itself


def test_a_missing_screenrecord_ends_the_chain_with_the_shells_words() -> None:
    assert segment_end(MISSING_EXIT, 0.1, False, NOT_FOUND) == (
        "screenrecord is not available on this device (/system/bin/sh: screenrecord: inaccessible or not found)")
    assert segment_end(MISSING_EXIT, 0.1, False, "") == "screenrecord is not available on this device (exit 127)"
    # the attempt may end (and stop the recording) before the device's shell has answered
    assert segment_end(MISSING_EXIT, 0.4, True, NOT_FOUND).startswith("screenrecord is not available")


def test_a_screenrecord_that_dies_ends_the_chain_with_its_exit_and_last_line() -> None:
    assert segment_end(137, 4.2, False, "") == "screenrecord exited with code 137 after 4s"
    assert segment_end(1, 0.2, False, "Unable to open '/sdcard/x.mp4': Read-only file system\n") == (
        "screenrecord exited with code 1 after 0s: Unable to open '/sdcard/x.mp4': Read-only file system")


def test_a_segment_that_ends_at_once_without_error_is_not_restarted_in_a_loop() -> None:
    assert segment_end(0, 0.3, False, "").startswith("screenrecord ended after 0.3s")
    assert segment_end(0, 1.0, False, "") == ""


# --- the budget --------------------------------------------------------------------------------------------

def test_the_budget_keeps_what_fits_and_refuses_what_would_go_over() -> None:
    budget = Budget(100)
    assert budget.take(60) and not budget.exhausted()
    assert not budget.take(50)  # refused: nothing counted
    assert budget.used == 60
    assert budget.take(40) and budget.exhausted()
    assert not budget.take(1)


def test_a_zero_budget_keeps_nothing() -> None:
    budget = Budget(0)
    assert budget.exhausted() and not budget.take(1)


def test_the_budget_is_shared_safely_by_device_workers() -> None:
    budget = Budget(1000)
    taken: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(100):
            ok = budget.take(3)
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 333 and budget.used == 999


def test_the_policy_says_its_budget_in_megabytes() -> None:
    assert VideoPolicy(enabled=True, budget_bytes=200_000_000).budget_text == "200 MB"
    assert VideoPolicy(enabled=True, budget_bytes=1_500_000).budget_text == "1.5 MB"


# --- finished MP4 files ----------------------------------------------------------------------------------

def box(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


FTYP = box(b"ftyp", b"isom\0\0\2\0isomavc1")


@pytest.mark.parametrize(("boxes", "complete"), [
    ([FTYP, box(b"moov", b"x" * 40), box(b"mdat", b"y" * 100)], True),
    ([FTYP, box(b"mdat", b"y" * 100), box(b"moov", b"x" * 40)], True),  # moov at the end, as MediaMuxer writes it
    ([FTYP, box(b"free", b"\0" * 64), box(b"mdat", b"y" * 100)], False),  # stopped before moov: unplayable
    ([FTYP, box(b"moov", b"x" * 40), box(b"mdat", b"y" * 100)[:-10]], False),  # cut short
    ([FTYP, box(b"moov", b"x" * 40), struct.pack(">I", 0) + b"mdat" + b"y" * 30], True),  # size 0: to the end
    ([], False),
    ([b"not an mp4 file at all"], False),
])
def test_a_complete_mp4_has_ftyp_moov_and_mdat_and_ends_where_its_boxes_end(tmp_path: Path, boxes: list[bytes],
                                                                           complete: bool) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(b"".join(boxes))
    assert is_complete_mp4(path) is complete


def test_a_64_bit_box_size_is_read(tmp_path: Path) -> None:
    large_mdat = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 16 + 20) + b"z" * 20
    path = tmp_path / "video.mp4"
    path.write_bytes(FTYP + box(b"moov", b"x" * 8) + large_mdat)
    assert is_complete_mp4(path)
    assert not is_complete_mp4(tmp_path / "missing.mp4")


# --- names ---------------------------------------------------------------------------------------------------

def test_files_on_the_device_are_named_after_the_run_and_numbered() -> None:
    assert remote_path("local-20261130T060606Z-4f84be", 3) == "/sdcard/prodval-local-20261130T060606Z-4f84be-3.mp4"
    assert remote_path("123/validate job", 1) == "/sdcard/prodval-123-validate-job-1.mp4"  # nothing for the shell
    assert remote_path("", 1) == "/sdcard/prodval-run-1.mp4"


def test_an_attempts_videos_are_found_among_its_artifacts_in_segment_order() -> None:
    folder = "flows/a.yaml/attempt-2"
    paths = [f"{folder}/report.xml", f"{folder}/video-10.mp4", f"{folder}/video-2.mp4", f"{folder}/video-1.mp4",
             f"{folder}/debug/my-video-1.mp4.json", f"{folder}/stdout.log"]
    assert videos_of(paths) == [f"{folder}/video-1.mp4", f"{folder}/video-2.mp4", f"{folder}/video-10.mp4"]
    assert videos_of([]) == []


def test_an_alert_line_names_the_videos_and_says_how_many_more() -> None:
    line = FlowLine("a.yaml", "failed", 2, "Element not found", videos=("v/video-1.mp4",))
    assert line.detail() == "failed (2 attempts): Element not found [video: v/video-1.mp4]"
    many = FlowLine("a.yaml", "failed", 3, "", videos=tuple(f"video-{n}.mp4" for n in range(1, 6)))
    assert many.detail() == "failed (3 attempts) [videos: video-1.mp4, video-2.mp4, video-3.mp4 and 2 more]"
    assert FlowLine("a.yaml", "failed", 1, "x").detail() == "failed (1 attempt): x"

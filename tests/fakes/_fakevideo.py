"""The fake device's files and `screenrecord` (Python 3.11 stdlib only). See README.md in this folder.

Facts from AOSP frameworks/av cmds/screenrecord/screenrecord.cpp (v1.2 and later):
- `screenrecord [options] <filename>`; `--time-limit` default and maximum 180 s (`Time limit %ds outside
  acceptable range [1,180]`, exit 2); `--bit-rate` bits or `4M` (range 0.1..200 Mbps, else `Bit rate %dbps
  outside acceptable range [%d,%d]`, exit 2); `--size WxH`; `--verbose`, `--bugreport`, `--help`.
- It creates the file at once (`Unable to open '%s': %s`, exit 1), prints nothing without --verbose, and
  finishes the MP4 (MediaMuxer::stop writes the `moov` box) on SIGINT/SIGHUP or at the time limit, exit 0.
- Stopped from the host, the local adb client takes the signal and may end before the device side has
  finished the file (a file without `moov`: unplayable). The reliable stop is on the device:
  `adb shell pkill -INT screenrecord`, then waiting for the adb client to exit.

The fake models that: `pkill -INT screenrecord` (device side) sends the fake adb client SIGUSR1, which
finishes a valid MP4 and exits 0; SIGINT/SIGTERM/SIGHUP on the adb client itself leave the unfinished file
(ftyp + free + mdat, no moov) and exit 130/143/129. Files live in a folder per device next to the state
file: `<state>.files/<serial>/sdcard/...` for `/sdcard/...`.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import sys
import time
from collections.abc import Callable

MAX_TIME_LIMIT = 180
MIN_BIT_RATE, MAX_BIT_RATE = 100_000, 200 * 1_000_000
WIDTH, HEIGHT = 32, 64  # pixels (2 x 4 macroblocks), like the fake maestro's screenshots
FRAMES = 2


# ---- a small valid H.264 MP4, built by hand -----------------------------------------------------------
# Baseline profile, one IDR slice per frame whose macroblocks are all I_PCM (raw samples): no entropy
# coder needed, and every H.264 decoder (Chromium's included) plays it.

class _Bits:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, value: int, width: int) -> None:
        self.bits += [(value >> (width - 1 - i)) & 1 for i in range(width)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(0, code.bit_length() - 1)
        self.u(code, code.bit_length())

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while len(self.bits) % 8:
            self.bits.append(0)

    def raw(self, data: bytes) -> None:
        for byte in data:
            self.u(byte, 8)

    def trailing(self) -> bytes:
        self.bits.append(1)
        self.align_zero()
        return bytes(int("".join(map(str, self.bits[i:i + 8])), 2) for i in range(0, len(self.bits), 8))


def _nal(header: int, rbsp: bytes) -> bytes:
    out = bytearray([header])
    zeros = 0
    for byte in rbsp:  # emulation prevention: 00 00 0x (x <= 3) becomes 00 00 03 0x
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps() -> bytes:
    b = _Bits()
    b.u(66, 8)  # profile_idc: Baseline
    b.u(0xC0, 8)  # constraint_set0/1 (constrained baseline)
    b.u(10, 8)  # level 1.0
    b.ue(0)  # seq_parameter_set_id
    b.ue(0)  # log2_max_frame_num_minus4
    b.ue(2)  # pic_order_cnt_type 2: output order is decode order
    b.ue(1)  # max_num_ref_frames
    b.u(0, 1)  # gaps_in_frame_num_value_allowed_flag
    b.ue(WIDTH // 16 - 1)
    b.ue(HEIGHT // 16 - 1)
    b.u(1, 1)  # frame_mbs_only_flag
    b.u(1, 1)  # direct_8x8_inference_flag
    b.u(0, 1)  # frame_cropping_flag
    b.u(0, 1)  # vui_parameters_present_flag
    return _nal(0x67, b.trailing())


def _pps() -> bytes:
    b = _Bits()
    b.ue(0)  # pic_parameter_set_id
    b.ue(0)  # seq_parameter_set_id
    b.u(0, 1)  # CAVLC
    b.u(0, 1)  # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)  # num_slice_groups_minus1
    b.ue(0)
    b.ue(0)  # num_ref_idx_l0/l1_default_active_minus1
    b.u(0, 1)  # weighted_pred_flag
    b.u(0, 2)  # weighted_bipred_idc
    b.se(0)
    b.se(0)
    b.se(0)  # pic_init_qp/qs_minus26, chroma_qp_index_offset
    b.u(0, 1)  # deblocking_filter_control_present_flag
    b.u(0, 1)  # constrained_intra_pred_flag
    b.u(0, 1)  # redundant_pic_cnt_present_flag
    return _nal(0x68, b.trailing())


def _idr(idr_id: int, yuv: tuple[int, int, int]) -> bytes:
    b = _Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type: I (all slices of the picture)
    b.ue(0)  # pic_parameter_set_id
    b.u(0, 4)  # frame_num (log2_max_frame_num = 4)
    b.ue(idr_id)  # idr_pic_id: consecutive IDR pictures differ
    b.u(0, 1)  # no_output_of_prior_pics_flag
    b.u(0, 1)  # long_term_reference_flag
    b.se(0)  # slice_qp_delta
    y, cb, cr = yuv
    for _ in range((WIDTH // 16) * (HEIGHT // 16)):
        b.ue(25)  # mb_type I_PCM
        b.align_zero()  # pcm_alignment_zero_bit
        b.raw(bytes([y]) * 256 + bytes([cb]) * 64 + bytes([cr]) * 64)
    return _nal(0x65, b.trailing())


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def ftyp() -> bytes:
    return _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")


def mp4(duration_ms: int) -> bytes:
    """A complete MP4 (ftyp, moov, mdat) of FRAMES solid-colour frames lasting `duration_ms`."""
    duration_ms = max(duration_ms, FRAMES)
    sps, pps = _sps(), _pps()
    colours = [(81, 90, 240), (145, 54, 34)]  # red, green (BT.601 YCbCr)
    samples = [_idr(i % 2, colours[i % 2]) for i in range(FRAMES)]
    sample_data = b"".join(struct.pack(">I", len(s)) + s for s in samples)
    delta = duration_ms // FRAMES
    avcc = _box(b"avcC", bytes([1, 66, 0xC0, 10, 0xFF, 0xE1]), struct.pack(">H", len(sps)), sps,
                b"\x01", struct.pack(">H", len(pps)), pps)
    avc1 = _box(b"avc1", b"\0" * 6, struct.pack(">H", 1), b"\0" * 16, struct.pack(">HH", WIDTH, HEIGHT),
                struct.pack(">II", 0x480000, 0x480000), b"\0" * 4, struct.pack(">H", 1), b"\0" * 32,
                struct.pack(">Hh", 0x18, -1), avcc)

    def moov(chunk_offset: int) -> bytes:
        stbl = _box(b"stbl",
                    _full(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
                    _full(b"stts", 0, 0, struct.pack(">III", 1, FRAMES, delta)),
                    _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, FRAMES, 1)),
                    _full(b"stsz", 0, 0, struct.pack(">II", 0, FRAMES),
                          b"".join(struct.pack(">I", 4 + len(s)) for s in samples)),
                    _full(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset)))
        minf = _box(b"minf", _full(b"vmhd", 0, 1, b"\0" * 8),
                    _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1))), stbl)
        mdia = _box(b"mdia",
                    _full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, delta * FRAMES),
                          struct.pack(">HH", 0x55C4, 0)),
                    _full(b"hdlr", 0, 0, b"\0" * 4, b"vide", b"\0" * 12, b"VideoHandle\0"), minf)
        tkhd = _full(b"tkhd", 0, 3, struct.pack(">IIII", 0, 0, 1, 0), struct.pack(">I", delta * FRAMES),
                     b"\0" * 8, struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX, struct.pack(">II", WIDTH << 16, HEIGHT << 16))
        mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, delta * FRAMES), struct.pack(">IH", 0x10000, 0x100),
                     b"\0" * 10, _MATRIX, b"\0" * 24, struct.pack(">I", 2))
        return _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))

    head = ftyp()
    size = len(moov(0))
    return head + moov(len(head) + size + 8) + _box(b"mdat", sample_data)


def unfinished() -> bytes:
    """What MediaMuxer has written before its stop(): ftyp, the space kept for moov, the samples so far."""
    return ftyp() + _box(b"free", b"\0" * 64) + _box(b"mdat", b"\0" * 128)


# ---- the device's files -------------------------------------------------------------------------------

def device_root(state: str, serial: str) -> str:
    root = os.path.join(f"{state}.files", serial)
    os.makedirs(os.path.join(root, "sdcard"), exist_ok=True)
    return root


def local_path(state: str, serial: str, remote: str) -> str:
    return os.path.join(device_root(state, serial), os.path.normpath("/" + remote).lstrip("/"))


def _recorders(state: str, serial: str) -> str:
    folder = os.path.join(device_root(state, serial), ".screenrecord")
    os.makedirs(folder, exist_ok=True)
    return folder


def pull(state: str, serial: str, remote: str, local: str) -> int:
    source = local_path(state, serial, remote)
    if not os.path.isfile(source):
        sys.stderr.write(f"adb: error: failed to stat remote object '{remote}': No such file or directory\n")
        return 1
    target = os.path.join(local, os.path.basename(remote)) if os.path.isdir(local) else local
    if not os.path.isdir(os.path.dirname(os.path.abspath(target))):
        sys.stderr.write(f"adb: error: cannot create '{target}': No such file or directory\n")
        return 1
    started = time.monotonic()
    shutil.copyfile(source, target)
    size, took = os.path.getsize(target), max(time.monotonic() - started, 0.001)
    print(f"{remote}: 1 file pulled, 0 skipped. {size / took / 1e6:.1f} MB/s ({size} bytes in {took:.3f}s)")
    return 0


def rm(state: str, serial: str, args: list[str]) -> int:
    force = any(a.startswith("-") and "f" in a for a in args)
    status = 0
    for remote in (a for a in args if not a.startswith("-")):
        path = local_path(state, serial, remote)
        if os.path.isfile(path):
            os.remove(path)
        elif not force:
            sys.stderr.write(f"rm: {remote}: No such file or directory\n")
            status = 1
    return status


_SIGNALS = {"INT": signal.SIGINT, "2": signal.SIGINT, "TERM": signal.SIGTERM, "15": signal.SIGTERM,
            "KILL": signal.SIGKILL, "9": signal.SIGKILL, "HUP": signal.SIGHUP, "1": signal.SIGHUP}


def pkill(state: str, serial: str, args: list[str]) -> int:
    """toybox `pkill [-SIGNAL] NAME`: exit 1 (silently) when no process matched. Only screenrecord runs here."""
    sig = signal.SIGTERM
    names = []
    for arg in args:
        if arg.startswith("-") and arg[1:].upper().removeprefix("SIG") in _SIGNALS:
            sig = _SIGNALS[arg[1:].upper().removeprefix("SIG")]
        elif not arg.startswith("-"):
            names.append(arg)
    if names != ["screenrecord"]:
        return 1
    hit = False
    folder = _recorders(state, serial)
    for name in os.listdir(folder):
        try:
            # the device-side SIGINT/SIGHUP: the recorder finishes its file (the fake's client takes SIGUSR1)
            os.kill(int(name), signal.SIGUSR1 if sig in (signal.SIGINT, signal.SIGHUP) else signal.SIGKILL)
            hit = True
        except (OSError, ValueError):
            os.remove(os.path.join(folder, name))
    return 0 if hit else 1


USAGE = """Usage: screenrecord [options] <filename>

Android screenrecord v1.3.  Records the device's display to a .mp4 file.

Options:
--size WIDTHxHEIGHT
    Set the video size, e.g. "1280x720".  Default is the device's main
    display resolution (if supported), 1280x720 if not.  For best results,
    use a size supported by the AVC encoder.
--bit-rate RATE
    Set the video bit rate, in bits per second.  Value may be specified as
    bits or megabits, e.g. '4000000' is equivalent to '4M'.  Default 20Mbps.
--bugreport
    Add additional information, such as a timestamp overlay, that is helpful
    in videos captured to illustrate bugs.
--time-limit TIME
    Set the maximum recording time, in seconds.  Default / maximum is 180.
--verbose
    Display interesting information on stdout.
--help
    Show this message.

Recording continues until Ctrl-C is hit or the time limit is reached.
"""


def screenrecord(state: str, serial: str, dev: dict, args: list[str],
                 reachable: Callable[[], bool] = lambda: True) -> int:
    """`adb shell screenrecord ...` on the fake device. Device keys: `screenrecord_missing` (no such
    binary), `screenrecord_dies_after` (seconds: killed, exit 137, file unfinished), `screenrecord_time_scale`
    (a real second per recorded second: 0.01 makes the 180 s limit 1.8 s)."""
    if dev.get("screenrecord_missing"):
        sys.stderr.write("/system/bin/sh: screenrecord: inaccessible or not found\n")
        return 127
    limit, files = MAX_TIME_LIMIT, []
    i = 0
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if arg == "--help":
            sys.stderr.write(USAGE)
            return 0
        if arg in ("--verbose", "--bugreport", "--rotate"):
            i += 1
            continue
        if arg in ("--time-limit", "--bit-rate", "--size"):
            if value is None:
                sys.stderr.write(f"screenrecord: option '{arg}' requires an argument\n")
                return 2
            if arg == "--time-limit":
                limit = int(value) if value.lstrip("-").isdigit() else 0
                if limit <= 0 or limit > MAX_TIME_LIMIT:
                    sys.stderr.write(f"Time limit {limit}s outside acceptable range [1,{MAX_TIME_LIMIT}]\n")
                    return 2
            elif arg == "--bit-rate":
                digits = value[:-1] if value[-1:].upper() == "M" else value
                if not digits.isdigit():
                    sys.stderr.write(f"Unrecognized value: {value}\n")
                    return 2
                rate = int(digits) * (1_000_000 if digits != value else 1)
                if not MIN_BIT_RATE <= rate <= MAX_BIT_RATE:
                    sys.stderr.write(f"Bit rate {rate}bps outside acceptable range [{MIN_BIT_RATE},{MAX_BIT_RATE}]\n")
                    return 2
            i += 2
            continue
        if arg.startswith("--"):
            sys.stderr.write(f"screenrecord: unrecognized option '{arg}'\n")
            return 2
        files.append(arg)
        i += 1
    if len(files) != 1:
        sys.stderr.write("Must specify output file (see --help).\n")
        return 2
    target = local_path(state, serial, files[0])
    if not os.path.isdir(os.path.dirname(target)):
        sys.stderr.write(f"Unable to open '{files[0]}': No such file or directory\n")
        return 1
    with open(target, "wb") as fh:
        fh.write(unfinished())
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # taken by sigtimedwait below: no polling
    marker = os.path.join(_recorders(state, serial), str(os.getpid()))
    open(marker, "w").close()
    try:
        scale = float(dev.get("screenrecord_time_scale", 1.0))
        dies_after = dev.get("screenrecord_dies_after")
        started = time.monotonic()
        end = started + limit * scale
        dies_at = started + float(dies_after) if dies_after is not None else float("inf")
        while True:
            left = min(end, dies_at) - time.monotonic()
            if left <= 0:
                if dies_at <= end:
                    return 137  # killed on the device: the file stays unfinished
                break  # the time limit
            if not reachable():  # adb drops the shell connection of a device that went offline or away
                sys.stderr.write("adb: device offline\n")
                return 1
            got = signal.sigtimedwait(stops, min(left, 0.5))
            if got is not None:
                if got.si_signo != signal.SIGUSR1:  # the host adb client was stopped: nothing finishes the file
                    return 128 + got.si_signo
                break
        elapsed_ms = int((time.monotonic() - started) / scale * 1000)
        with open(target, "wb") as fh:
            fh.write(mp4(min(elapsed_ms, limit * 1000)))
        return 0
    finally:
        os.remove(marker)

"""Reading an APK from its own bytes: the binary manifest and the signer certificate.

Nothing here trusts Gradle files or runs a tool. The package name, versionCode, versionName and SDK
levels come from `AndroidManifest.xml` in Android's binary XML (AXML) format, with `@string/...`
references looked up in `resources.arsc`; the signer certificate comes from the APK Signing Block
(schemes v3 and v2, https://source.android.com/docs/security/features/apksigning/v2) or, for an
APK signed only with v1 (JAR signing), from the PKCS#7 block in `META-INF/*.RSA|DSA|EC`.

The signatures themselves are not verified (that needs RSA/EC, not in the standard library): this
reports *who* signed, `apksigner verify` proves the signature holds, and Android refuses to install
an APK whose signature does not.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ApkError, ConfigError

MANIFEST = "AndroidManifest.xml"
RESOURCES = "resources.arsc"

# Resource ids of the android: attributes we read (android.R.attr); names can be stripped by shrinkers.
ATTR_VERSION_CODE = 0x0101021B
ATTR_VERSION_NAME = 0x0101021C
ATTR_MIN_SDK = 0x0101020C
ATTR_TARGET_SDK = 0x01010270

# Chunk types (frameworks/base/libs/androidfw/include/androidfw/ResourceTypes.h).
_RES_STRING_POOL = 0x0001
_RES_TABLE = 0x0002
_RES_XML = 0x0003
_RES_XML_START_ELEMENT = 0x0102
_RES_XML_RESOURCE_MAP = 0x0180
_RES_TABLE_PACKAGE = 0x0200
_RES_TABLE_TYPE = 0x0201
_UTF8_FLAG = 1 << 8
_NO_ENTRY = 0xFFFFFFFF
# Res_value data types.
_TYPE_REFERENCE = 0x01
_TYPE_STRING = 0x03
_TYPE_INT_DEC = 0x10
_TYPE_INT_HEX = 0x11

# APK Signing Block (the block sits right before the ZIP central directory).
_SIG_BLOCK_MAGIC = b"APK Sig Block 42"
_SCHEME_IDS = {0xF05368C0: "v3", 0x7109871A: "v2", 0x1B93AD61: "v3.1"}
_EOCD_MAGIC = b"PK\x05\x06"
_V1_SUFFIXES = (".RSA", ".DSA", ".EC")


@dataclass(frozen=True)
class ApkInfo:
    """What an APK says about itself."""

    path: Path
    package: str
    version_code: int | None
    version_name: str
    min_sdk: int | None
    target_sdk: int | None
    size: int
    sha256: str
    signer_sha256: str  # "" when the APK is not signed
    schemes: tuple[str, ...]  # signature schemes present: "v1", "v2", "v3", "v3.1"

    @property
    def signed(self) -> bool:
        return bool(self.signer_sha256)

    def to_record(self) -> dict[str, Any]:
        return {
            "packageName": self.package,
            "versionCode": self.version_code,
            "versionName": self.version_name,
            "minSdkVersion": self.min_sdk,
            "targetSdkVersion": self.target_sdk,
            "size": self.size,
            "sha256": self.sha256,
            "signerCertificateSha256": self.signer_sha256,
            "signatureSchemes": list(self.schemes),
        }


def require_apk(path: Path) -> None:
    """The one "the APK is there" check (before reading it, before installing it): ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"the APK '{path}' does not exist",
                          fix="pass --apk with the path of a built APK, or run `invoke build-apk` first")


def inspect_apk(path: Path) -> ApkInfo:
    """Read an APK's identity and signer; ApkError when it is not an APK."""
    try:
        size = path.stat().st_size
        digest = _file_sha256(path)
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if MANIFEST not in names:
                hint = " (it looks like an Android App Bundle)" if "BundleConfig.pb" in names else ""
                raise ApkError(f"{path} has no {MANIFEST}: not an APK{hint}",
                               fix="point the build at an APK (an assemble task), not a bundle or another archive")
            manifest = archive.read(MANIFEST)
            table = archive.read(RESOURCES) if RESOURCES in names else b""
            v1_blocks = [archive.read(n) for n in sorted(names)
                         if n.startswith("META-INF/") and n.upper().endswith(_V1_SUFFIXES) and n.count("/") == 1]
    except (OSError, zipfile.BadZipFile, zlib.error) as exc:  # zlib.error: a damaged compressed entry
        raise ApkError(f"cannot read {path} as an APK: {exc}", fix="check that the build wrote a complete .apk file") from None
    # Everything below parses bytes the build wrote: any damage must become an ApkError naming the file,
    # the resources.arsc lookups (read on first use) and the v1 signature block included.
    try:
        attrs = read_manifest(manifest)
        resolve = _StringResolver(table)
        schemes, signer = signing_certificate(path)
        if v1_blocks:
            schemes = ("v1", *schemes)
            signer = signer or _v1_signer(v1_blocks[0])
        package = attrs.get("package")
        if not isinstance(package, str) or not package:
            raise ApkError(f"{path}: the manifest has no package name", fix="rebuild the APK")
        return ApkInfo(
            path=path,
            package=package,
            version_code=_as_int(resolve(attrs.get(ATTR_VERSION_CODE))),
            version_name=_as_text(resolve(attrs.get(ATTR_VERSION_NAME))),
            min_sdk=_as_int(resolve(attrs.get(ATTR_MIN_SDK))),
            target_sdk=_as_int(resolve(attrs.get(ATTR_TARGET_SDK))),
            size=size,
            sha256=digest,
            signer_sha256=signer,
            schemes=schemes,
        )
    except (struct.error, IndexError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise ApkError(f"{path} is damaged: cannot parse it ({exc})", fix="rebuild the APK") from None


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _as_int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


def _as_text(value: object) -> str:
    return "" if value is None else str(value)


# ---- binary XML ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """An attribute that points at a resource (`@string/name` compiled to its id)."""

    resource_id: int


def _string_pool(data: bytes, start: int) -> list[str]:
    _, header_size, _, count, _, flags, strings_start = struct.unpack_from("<HHIIIII", data, start)
    offsets = struct.unpack_from(f"<{count}I", data, start + header_size)
    base = start + strings_start
    utf8 = bool(flags & _UTF8_FLAG)
    return [_pool_string(data, base + offset, utf8) for offset in offsets]


def _pool_string(data: bytes, pos: int, utf8: bool) -> str:
    if utf8:
        pos += 2 if data[pos] & 0x80 else 1  # length in characters, then in bytes
        length = data[pos]
        if length & 0x80:
            length = ((length & 0x7F) << 8) | data[pos + 1]
            pos += 1
        pos += 1
        return data[pos:pos + length].decode("utf-8", errors="replace")
    (length,) = struct.unpack_from("<H", data, pos)
    pos += 2
    if length & 0x8000:
        (low,) = struct.unpack_from("<H", data, pos)
        length = ((length & 0x7FFF) << 16) | low
        pos += 2
    return data[pos:pos + 2 * length].decode("utf-16-le", errors="replace")


def _chunks(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(type, header size, start, size) of each chunk between start and end."""
    pos = start
    while pos + 8 <= end:
        kind, header_size, size = struct.unpack_from("<HHI", data, pos)
        if size < 8:
            raise ValueError(f"bad chunk size {size} at {pos}")
        yield kind, header_size, pos, size
        pos += size


def _value(kind: int, data: int, strings: list[str]) -> object:
    if kind == _TYPE_STRING:
        return strings[data]
    if kind in (_TYPE_INT_DEC, _TYPE_INT_HEX):
        return data - (1 << 32) if data & 0x80000000 else data
    if kind == _TYPE_REFERENCE:
        return Reference(data)
    return data


def read_manifest(data: bytes) -> dict[int | str, object]:
    """The attributes of `<manifest>` and `<uses-sdk>`: `package` by name, android: attributes by id."""
    kind, header_size, size = struct.unpack_from("<HHI", data, 0)
    if kind != _RES_XML:
        raise ValueError("AndroidManifest.xml is not binary XML (AXML)")
    strings: list[str] = []
    resource_ids: list[int] = []
    found: dict[int | str, object] = {}
    for chunk, chunk_header, start, chunk_size in _chunks(data, header_size, min(size, len(data))):
        if chunk == _RES_STRING_POOL:
            strings = _string_pool(data, start)
        elif chunk == _RES_XML_RESOURCE_MAP:
            count = (chunk_size - chunk_header) // 4
            resource_ids = list(struct.unpack_from(f"<{count}I", data, start + chunk_header))
        elif chunk == _RES_XML_START_ELEMENT:
            _, name, attr_start, attr_size, attr_count = struct.unpack_from("<IIHHH", data, start + chunk_header)
            element = strings[name]
            if element not in ("manifest", "uses-sdk"):
                continue
            for index in range(attr_count):
                pos = start + chunk_header + attr_start + index * attr_size
                _, attr_name, raw, _, _, value_type, value = struct.unpack_from("<IIIHBBI", data, pos)
                key: int | str = resource_ids[attr_name] if attr_name < len(resource_ids) else strings[attr_name]
                if key in found:
                    continue
                found[key] = strings[raw] if raw != _NO_ENTRY else _value(value_type, value, strings)
    return found


# ---- resources.arsc --------------------------------------------------------------------------------

class _StringResolver:
    """Looks references up in resources.arsc, preferring the default configuration (as aapt does)."""

    def __init__(self, table: bytes) -> None:
        self._table = table
        self._values: dict[int, list[tuple[bool, object]]] | None = None

    def __call__(self, value: object) -> object:
        seen = 0
        while isinstance(value, Reference) and seen < 8:
            candidates = self._load().get(value.resource_id, [])
            if not candidates:
                return f"@0x{value.resource_id:08x}"
            candidates.sort(key=lambda c: not c[0])
            value = candidates[0][1]
            seen += 1
        return value

    def _load(self) -> dict[int, list[tuple[bool, object]]]:
        if self._values is None:
            self._values = _read_table(self._table) if self._table else {}
        return self._values


def _read_table(data: bytes) -> dict[int, list[tuple[bool, object]]]:
    kind, header_size, size = struct.unpack_from("<HHI", data, 0)
    if kind != _RES_TABLE:
        raise ValueError("resources.arsc is not a resource table")
    values: dict[int, list[tuple[bool, object]]] = {}
    strings: list[str] = []
    for chunk, chunk_header, start, chunk_size in _chunks(data, header_size, min(size, len(data))):
        if chunk == _RES_STRING_POOL:
            strings = _string_pool(data, start)
        elif chunk == _RES_TABLE_PACKAGE:
            (package_id,) = struct.unpack_from("<I", data, start + 8)
            for sub, sub_header, sub_start, _ in _chunks(data, start + chunk_header, start + chunk_size):
                if sub == _RES_TABLE_TYPE:
                    _read_type(data, sub_start, sub_header, package_id, strings, values)
    return values


def _read_type(data: bytes, start: int, header_size: int, package_id: int, strings: list[str],
               values: dict[int, list[tuple[bool, object]]]) -> None:
    type_id, flags, _, entry_count, entries_start = struct.unpack_from("<BBHII", data, start + 8)
    (config_size,) = struct.unpack_from("<I", data, start + 20)
    config = data[start + 24:start + 20 + config_size]
    default_config = not any(config)
    sparse = bool(flags & 0x01)
    offsets: list[tuple[int, int]] = []
    if sparse:
        for i in range(entry_count):
            index, offset = struct.unpack_from("<HH", data, start + header_size + 4 * i)
            offsets.append((index, offset * 4))
    else:
        raw = struct.unpack_from(f"<{entry_count}I", data, start + header_size)
        offsets = [(i, off) for i, off in enumerate(raw) if off != _NO_ENTRY]
    for index, offset in offsets:
        pos = start + entries_start + offset
        entry_size, entry_flags = struct.unpack_from("<HH", data, pos)
        if entry_flags & 0x0001:  # a complex (bag) entry: styles, plurals; not a plain value
            continue
        _, _, value_type, value = struct.unpack_from("<HBBI", data, pos + entry_size)
        resource_id = (package_id << 24) | (type_id << 16) | index
        values.setdefault(resource_id, []).append((default_config, _value(value_type, value, strings)))


# ---- signatures ------------------------------------------------------------------------------------

def signing_certificate(path: Path) -> tuple[tuple[str, ...], str]:
    """(schemes in the APK Signing Block, SHA-256 of the signer's certificate) from v3, else v2."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        file_size = fh.tell()
        tail_size = min(file_size, 65536 + 22)
        fh.seek(file_size - tail_size)
        tail = fh.read(tail_size)
        eocd = tail.rfind(_EOCD_MAGIC)
        if eocd < 0:
            raise ValueError("no ZIP end of central directory")
        (cd_offset,) = struct.unpack_from("<I", tail, eocd + 16)
        if cd_offset < 32:
            return (), ""
        fh.seek(cd_offset - 24)
        footer = fh.read(24)
        if footer[8:] != _SIG_BLOCK_MAGIC:
            return (), ""
        (block_size,) = struct.unpack_from("<Q", footer, 0)
        if block_size > cd_offset - 8:
            raise ValueError(f"APK Signing Block size {block_size} does not fit before the central directory")
        fh.seek(cd_offset - block_size - 8)
        block = fh.read(block_size + 8)
    if struct.unpack_from("<Q", block, 0)[0] != block_size:
        raise ValueError("APK Signing Block sizes disagree")
    pairs: dict[str, bytes] = {}
    pos, end = 8, len(block) - 24
    while pos + 12 <= end:
        length, pair_id = struct.unpack_from("<QI", block, pos)
        if pair_id in _SCHEME_IDS:
            pairs[_SCHEME_IDS[pair_id]] = block[pos + 12:pos + 8 + length]
        pos += 8 + length
    schemes = tuple(s for s in ("v2", "v3", "v3.1") if s in pairs)
    for scheme in ("v3", "v2"):
        if scheme in pairs:
            return schemes, _first_certificate_sha256(pairs[scheme])
    return schemes, ""


def _prefixed(data: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("<I", data, pos)
    return data[pos + 4:pos + 4 + length], pos + 4 + length


def _first_certificate_sha256(scheme_block: bytes) -> str:
    """signers -> first signer -> signed data -> (digests, certificates) -> first certificate (DER)."""
    signers, _ = _prefixed(scheme_block, 0)
    signer, _ = _prefixed(signers, 0)
    signed_data, _ = _prefixed(signer, 0)
    _, pos = _prefixed(signed_data, 0)  # digests
    certificates, _ = _prefixed(signed_data, pos)
    certificate, _ = _prefixed(certificates, 0)
    if not certificate:
        raise ValueError("the signing block has a signer without a certificate")
    return hashlib.sha256(certificate).hexdigest()


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at pos."""
    tag = data[pos]
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    return tag, start, start + length


def _der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, end) of each element in [start, end)."""
    items = []
    pos = start
    while pos < end:
        tag, content, stop = _der(data, pos)
        items.append((tag, pos, content, stop))
        pos = stop
    return items


def _v1_signer(pkcs7: bytes) -> str:
    """SHA-256 of the certificate that signed a JAR signature block (PKCS#7 SignedData)."""
    _, content, end = _der(pkcs7, 0)  # ContentInfo
    children = _der_children(pkcs7, content, end)
    _, _, explicit, _ = children[1]  # [0] EXPLICIT SignedData
    _, signed, signed_end = _der(pkcs7, explicit)
    parts = _der_children(pkcs7, signed, signed_end)
    certificates = [p for p in parts if p[0] == 0xA0]
    signer_infos = [p for p in parts if p[0] == 0x31][-1]
    if not certificates:
        raise ValueError("the v1 signature block has no certificate")
    certs = _der_children(pkcs7, certificates[0][2], certificates[0][3])
    wanted = _signer_id(pkcs7, signer_infos)
    for _, cert_start, cert_content, cert_end in certs:
        if wanted is None or _issuer_and_serial(pkcs7, cert_content) == wanted:
            return hashlib.sha256(pkcs7[cert_start:cert_end]).hexdigest()
    return hashlib.sha256(pkcs7[certs[0][1]:certs[0][3]]).hexdigest()


def _signer_id(data: bytes, signer_infos: tuple[int, int, int, int]) -> tuple[bytes, bytes] | None:
    infos = _der_children(data, signer_infos[2], signer_infos[3])
    if not infos:
        return None
    fields = _der_children(data, infos[0][2], infos[0][3])
    sid = fields[1]
    if sid[0] != 0x30:  # subjectKeyIdentifier: match by position instead
        return None
    issuer, serial = _der_children(data, sid[2], sid[3])[:2]
    return data[issuer[1]:issuer[3]], data[serial[2]:serial[3]]


def _issuer_and_serial(data: bytes, cert_content: int) -> tuple[bytes, bytes]:
    _, tbs, tbs_end = _der(data, cert_content)
    fields = _der_children(data, tbs, tbs_end)
    if fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    serial, _, issuer = fields[0], fields[1], fields[2]
    return data[issuer[1]:issuer[3]], data[serial[2]:serial[3]]

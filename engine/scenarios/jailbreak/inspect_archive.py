"""What an Inspect `.eval` log (a zip archive) may hold before Inspect reads it for an import.

Inspect reads every entry whose name starts with `samples/` and ends in `.json` as a sample, and
inflates each entry whole whatever its header says. So before it reads a log: every sample entry's
name must be one Inspect writes (`samples/<id>_epoch_<n>.json` or an entry under that prefix, as a
plain relative name: no `..`, no `.`, no empty part, no backslash), and every entry is inflated
here first, through a bounded stream, from the same compressed bytes Inspect reads (the headers'
sizes can lie), against two caps: per entry and for the whole import
(`scenario.inspect_logs.max_member_mb`, `max_total_mb`). Measured: Inspect validates sample metadata
at about 1 MB/s, so the caps turn a hostile log into a clear error at once, not minutes of work."""

from __future__ import annotations

import posixpath
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from engine.kernel.errors import SpecError

KEY = "scenario.inspect_logs"
SAMPLES_DIR = "samples/"
# A sample as one entry (samples/<id>_epoch_<n>.json), or as Inspect's chunked shape under that prefix
# (samples/<id>_epoch_<n>/sample.json, .../messages/0.json).
SAMPLE_NAME = re.compile(r"^samples/.+_epoch_\d+(?:/.+)?\.json$")
STORED, DEFLATED, ZSTD = 0, 8, 93  # the compression methods Inspect reads
CHUNK = 1 << 20
MB = 1 << 20


@dataclass
class InflateBudget:
    """What the import may still inflate: caps per entry and in total, in bytes."""

    member_cap: int
    total_cap: int
    used: int = field(default=0)

    @classmethod
    def of_mb(cls, member_mb: float, total_mb: float) -> "InflateBudget":
        return cls(int(member_mb * MB), int(total_mb * MB))


def check_eval_archive(path: Path, display: str, budget: InflateBudget) -> None:
    """Refuse (SpecError naming the log and the entry) a `.eval` whose sample entries Inspect would
    not write, or that inflates beyond the budget; charge what it inflates to the budget."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:  # a truncated or hostile central directory
        raise SpecError(f"cannot read as an Inspect log (not a readable zip archive: {exc})", file=display,
                        key=f"{KEY}.path") from None
    claimed = budget.used
    for info in infos:  # what the central directory claims, before anything is inflated
        if info.filename.startswith(SAMPLES_DIR) and info.filename.endswith(".json") \
                and not is_sample_name(info.filename):
            raise SpecError(f"entry {info.filename!r} is not a sample name Inspect writes (samples/<id>_epoch_<n>"
                            ".json): the log was not written by Inspect or was altered", file=display,
                            key=f"{KEY}.path")
        claimed += info.file_size
        _check_size(budget, info.file_size, claimed, f"entry {info.filename!r} says it inflates to", display)
    with open(path, "rb") as handle:
        for info in infos:  # what the compressed bytes inflate to (a header can lie)
            inflated = 0
            for chunk in _decompressed(_compressed(handle, info, display), info, display,
                                       min(budget.member_cap, budget.total_cap - budget.used) + 1):
                inflated += len(chunk)
                _check_size(budget, inflated, budget.used + inflated, f"entry {info.filename!r} inflates to",
                            display)
            if inflated != info.file_size:
                raise SpecError(f"entry {info.filename!r} inflates to {inflated:,} bytes where its header says "
                                f"{info.file_size:,}: the log is corrupt or was altered", file=display,
                                key=f"{KEY}.path")
            budget.used += inflated


def charge_file(budget: InflateBudget, size: int, display: str) -> None:
    """A `.json` log is read whole: its size counts as one entry's."""
    _check_size(budget, size, budget.used + size, "the log is", display)
    budget.used += size


def is_sample_name(name: str) -> bool:
    """A sample entry's name as Inspect writes it: under samples/, normalised, no backslash."""
    return ("\\" not in name and posixpath.normpath(name) == name and SAMPLE_NAME.match(name) is not None
            and not any(part in ("", ".", "..") for part in name.split("/")))


def _check_size(budget: InflateBudget, size: int, total: int, what: str, display: str) -> None:
    """`size` (an entry's) and `total` (the import's so far) within the caps, else a SpecError that
    says which cap and how to raise it."""
    if size > budget.member_cap:
        raise SpecError(f"{what} more than {budget.member_cap / MB:g} MB, what an import inflates per entry at "
                        f"most: raise {KEY}.max_member_mb if the log is trusted", file=display,
                        key=f"{KEY}.max_member_mb")
    if total > budget.total_cap:
        raise SpecError(f"{what} {size / MB:,.1f} MB, which takes the import past {budget.total_cap / MB:g} MB "
                        f"inflated over all its logs: raise {KEY}.max_total_mb if the logs are trusted",
                        file=display, key=f"{KEY}.max_total_mb")


def _compressed(handle: BinaryIO, info: zipfile.ZipInfo, display: str) -> Iterator[bytes]:
    handle.seek(info.header_offset)
    header = handle.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise SpecError(f"entry {info.filename!r} has no local header: the log is corrupt", file=display,
                        key=f"{KEY}.path")
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    handle.seek(info.header_offset + 30 + name_len + extra_len)
    left = info.compress_size
    while left > 0:
        chunk = handle.read(min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _decompressed(chunks: Iterator[bytes], info: zipfile.ZipInfo, display: str, limit: int) -> Iterator[bytes]:
    """Decompressed chunks, never more than `limit` bytes past what was yielded (so a bomb costs no memory)."""
    if info.compress_type == STORED:
        yield from chunks
        return
    try:
        if info.compress_type == DEFLATED:
            inflater = zlib.decompressobj(-15)
            for chunk in chunks:
                data = chunk
                while data and not inflater.eof:
                    out = inflater.decompress(data, CHUNK)
                    data = inflater.unconsumed_tail
                    yield out
                    limit -= len(out)
                    if limit <= 0:
                        return
            return
        if info.compress_type == ZSTD:
            import zstandard  # Inspect's own dependency, for the logs it writes

            reader = zstandard.ZstdDecompressor().stream_reader(_Chunks(chunks), read_across_frames=True)
            while limit > 0:
                out = reader.read(min(CHUNK, limit))
                if not out:
                    return
                limit -= len(out)
                yield out
            return
    except (zlib.error, ValueError) as exc:  # zstandard.ZstdError is a ValueError
        raise SpecError(f"entry {info.filename!r} cannot be decompressed ({exc}): the log is corrupt",
                        file=display, key=f"{KEY}.path") from None
    raise SpecError(f"entry {info.filename!r} uses a compression Inspect does not read (method "
                    f"{info.compress_type})", file=display, key=f"{KEY}.path")


class _Chunks:
    """A file-like reader over an iterator of byte chunks (for zstandard's stream reader)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        size = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

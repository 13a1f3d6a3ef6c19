"""open_capture: one entry point for capture files, by their first four bytes.

  d4c3b2a1 / a1b2c3d4   libpcap, microseconds (little / big endian)  -> PcapReader
  4d3cb2a1 / a1b23c4d   libpcap, nanoseconds                         -> PcapReader
  0a0d0d0a              pcapng section header block                  -> PcapngReader

Readers share one API:

  reader.fill(batch) -> int    append packets to batch rows batch.n.., return
                               how many (0 at end of file, or a full batch)
  reader.path, .nanosecond, .linktype (pcapng: of the first interface),
  .packets, .bytes (captured bytes read), .eof (fill() reached the end)
  reader.close(), or use it as a context manager

Errors are CaptureError (file and byte offset in the message); a truncated
last record is not an error but a `warn(message)` call.
"""
from softdpu.ports.pcap_read import MAGICS, PcapReader
from softdpu.ports.pcap_stream import CHUNK, CaptureError, CaptureWarning, ChunkStream
from softdpu.ports.pcapng_read import PcapngReader

__all__ = ["open_capture", "CaptureError", "CaptureWarning"]

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
OTHER_FORMATS = {   # a helpful name for magic numbers that are not captures
    b"\x1f\x8b": "a gzip file (decompress it first)",
    b"\x28\xb5\x2f\xfd": "a zstd file (decompress it first)",
    b"\x34\xcd\xb2\xa1": "a modified (Kuznetzov) pcap, not supported",
    b"\xa1\xb2\xcd\x34": "a modified (Kuznetzov) pcap, not supported",
}


def open_capture(path, port_no, warn=None, chunk=CHUNK):
    """Open a libpcap or pcapng file for reading into batches as port `port_no`.

    warn(message) is called for problems that still leave a readable file
    (default: warnings.warn with CaptureWarning).  chunk: bytes per read.
    """
    stream = ChunkStream(path, chunk)
    try:
        if not stream.more(4):
            if stream.hi == 0:
                raise CaptureError(path, 0, "empty file, not a pcap")
            raise CaptureError(path, 0, f"file of {stream.hi} bytes, too short for a pcap header")
        magic = stream.bytes_at(0, 4)
        if magic in MAGICS:
            return PcapReader(stream, port_no, warn)
        if magic == PCAPNG_MAGIC:
            return PcapngReader(stream, port_no, warn)
        what = next((name for m, name in OTHER_FORMATS.items() if magic.startswith(m)), None)
        raise CaptureError(path, 0, f"not a pcap or pcapng file: magic {magic.hex()}"
                           + (f", looks like {what}" if what else ""))
    except BaseException:
        stream.close()
        raise

"""Frames in and out of a Dpu's batch, in Python, for the testing toolkit (never the hot path).

    records = from_packets(packets, ts_ns, max_frame)    # scapy packets / bytes -> Records
    records = from_capture(path, max_frame)                # a pcap / pcapng file -> Records (its own times)
    fill(batch, ofport, records)                           # rows as a port would fill them
    for out in outputs(batch, ofports): ...                # the tx list: Output(ofport, frame, ts_ns, origin row)

A Record is what a port hands the pipeline: the bytes, the timestamp, the
length on the wire and the drop a port counts itself (a frame over
max_frame gets no bytes and `frame_too_big`, a record cut by the snaplen is
`snaplen_truncated`), as softdpu's capture readers fill rows.
"""
from dataclasses import dataclass

from softdpu import drops
from softdpu.batch import M_DROP, M_IN_PORT, M_LEN, M_ORIGIN, M_START, M_TS, M_WIRE_LEN, Batch
from softdpu.ports.capture import open_capture


@dataclass
class Record:
    data: bytes
    ts_ns: int
    wire_len: int
    drop: int = 0          # a drop the receiving port counts (frame_too_big, snaplen_truncated)


@dataclass
class Output:
    ofport: int
    frame: bytes
    ts_ns: int
    origin: int            # the batch row it is (a copy of), -1 for a packet softdpu made (ARP, ...)


def from_packets(packets, ts_ns, max_frame):
    """Records of scapy packets or bytes, all at ts_ns."""
    out = []
    for p in packets:
        data = bytes(p)
        if len(data) > max_frame:
            out.append(Record(b"", ts_ns, len(data), drops.FRAME_TOO_BIG))
        else:
            out.append(Record(data, ts_ns, len(data)))
    return out


def from_capture(path, max_frame, warn=None):
    """Records of a capture file, with its own timestamps (CaptureError if it is not one)."""
    scratch = Batch(256, max_frame, fanout=1, clones=0)
    out = []
    with open_capture(path, 0, warn=warn) as reader:
        while True:
            scratch.clear()
            if reader.fill(scratch) == 0:
                break
            m = scratch.meta
            for i in range(scratch.n):
                out.append(Record(scratch.packet(i), int(m[i, M_TS]), int(m[i, M_WIRE_LEN]), int(m[i, M_DROP])))
    return out


def fill(batch, ofport, records):
    """Clear the batch and fill its rows with records arriving on ofport (at most batch.size)."""
    batch.clear()
    for r in records:
        if r.drop == drops.FRAME_TOO_BIG:
            i = batch.n
            batch.meta[i, :] = 0
            batch.meta[i, M_START] = batch.headroom
            batch.meta[i, M_LEN] = 0
            batch.meta[i, M_WIRE_LEN] = r.wire_len
            batch.meta[i, M_TS] = r.ts_ns
            batch.meta[i, M_IN_PORT] = ofport
            batch.n += 1
        else:
            i = batch.append(r.data, ts=r.ts_ns, in_port=ofport, wire_len=r.wire_len)
        batch.meta[i, M_DROP] = r.drop


def outputs(batch, ofports):
    """The copies the batch's tx list sends to ports in `ofports`, in tx order (as a pcap port writes them)."""
    out = []
    for j in range(batch.n_tx):
        row, port = int(batch.tx[j, 0]), int(batch.tx[j, 1])
        if port not in ofports:
            continue
        origin = row if row < batch.n else int(batch.meta[row, M_ORIGIN])
        out.append(Output(port, batch.packet(row), int(batch.meta[row, M_TS]), origin))
    return out

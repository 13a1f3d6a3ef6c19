"""The Dpu end to end in memory: accounting, jumbo frames, independence of two pipelines."""
import numpy as np
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter as ScapyPcapWriter, rdpcap

from softdpu import config, drops
from softdpu.batch import M_DROP, Batch
from softdpu.pipeline import Dpu

FLOWS = "in_port=1,actions=output:2\nin_port=2,actions=output:1\n"


def make_pipeline(tmp_path, flows=FLOWS, extra="", inputs=None):
    (tmp_path / "p.flows").write_text(flows)
    text = f'[pipeline]\nflows = "p.flows"\n{extra}\n'
    for name, ofport in (("a", 1), ("b", 2)):
        text += f'[[port]]\nname = "{name}"\nofport = {ofport}\ntype = "pcap"\n'
        if inputs and name in inputs:
            text += f'input = "{inputs[name]}"\n'
    (tmp_path / "p.toml").write_text(text)
    return tmp_path / "p.toml"


def udp(n_payload, sport=1):
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2")
                 / UDP(sport=sport, dport=9) / bytes(n_payload))


def write_pcap(path, frames, t0=1000.0):
    with ScapyPcapWriter(str(path), linktype=1, sync=True) as w:
        for k, f in enumerate(frames):
            pkt = Ether(f)
            pkt.time = t0 + k * 0.001
            w.write(pkt)


def test_jumbo_frames_pass_with_max_frame_and_are_counted_drops_without(tmp_path):
    frames = [udp(100), udp(9000 - 42), udp(200)]
    write_pcap(tmp_path / "in.pcap", frames)
    small = Dpu.load(make_pipeline(tmp_path, inputs={"a": "in.pcap"}))
    stats = small.run_pcaps(out_dir=tmp_path / "small")
    assert stats.drop_counts() == {"frame_too_big": 1}
    assert [bytes(p) for p in rdpcap(str(tmp_path / "small" / "b.pcap"))] == [frames[0], frames[2]]

    big = Dpu.load(make_pipeline(tmp_path, extra="max_frame = 9216", inputs={"a": "in.pcap"}))
    stats = big.run_pcaps(out_dir=tmp_path / "big")
    assert stats.dropped == 0 and stats.left == 3
    assert [bytes(p) for p in rdpcap(str(tmp_path / "big" / "b.pcap"))] == frames


def test_two_pipelines_in_one_process_keep_their_own_state(tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    one.mkdir()
    two.mkdir()
    d1 = Dpu.load(make_pipeline(one))
    d2 = Dpu.load(make_pipeline(two, flows="actions=drop\n"))
    for dpu in (d1, d2):
        dpu.batch.clear()
        for k in range(5):
            dpu.batch.append(udp(20, sport=k), in_port=1)
    d1.process(d1.batch)
    d2.process(d2.batch)
    assert d1.stats.left == 5 and d1.stats.dropped == 0
    assert d2.stats.left == 0 and d2.stats.drop_counts() == {"action_drop": 5}
    assert d1.flows.program.n_packets[0] == 5 and d2.flows.program.n_packets[0] == 5
    assert d1.batch.data is not d2.batch.data


def test_snaplen_truncated_records_are_counted(tmp_path):
    frames = [udp(300), udp(300, sport=2)]
    write_pcap(tmp_path / "in.pcap", frames)
    raw = bytearray((tmp_path / "in.pcap").read_bytes())
    # rewrite the first record as captured with a 100-byte snaplen
    incl = 100
    rec = raw[24:24 + 16]
    raw[24 + 8:24 + 12] = incl.to_bytes(4, "little")
    first_len = int.from_bytes(rec[8:12], "little")
    del raw[24 + 16 + incl:24 + 16 + first_len]
    (tmp_path / "in.pcap").write_bytes(bytes(raw))
    dpu = Dpu.load(make_pipeline(tmp_path, inputs={"a": "in.pcap"}))
    stats = dpu.run_pcaps(out_dir=tmp_path / "o")
    assert stats.drop_counts() == {"snaplen_truncated": 1}
    assert stats.left == 1 and stats.rx == 2


def test_random_frames_are_all_accounted_for(tmp_path):
    """Fuzz the whole path: every received frame leaves or is counted under a reason."""
    rng = np.random.default_rng(7)
    dpu = Dpu.load(make_pipeline(tmp_path, flows="dl_type=0x0800,actions=output:2\nin_port=2,actions=output:1\n"))
    valid = udp(30)
    for round_ in range(20):
        dpu.batch.clear()
        for k in range(dpu.batch.size):
            if rng.random() < 0.5:
                f = bytearray(valid)
                for _ in range(int(rng.integers(1, 6))):
                    f[int(rng.integers(0, len(f)))] = int(rng.integers(0, 256))
                f = bytes(f[: int(rng.integers(0, len(f) + 1))])
            else:
                f = rng.integers(0, 256, int(rng.integers(0, 120)), dtype=np.uint8).tobytes()
            dpu.batch.append(f, in_port=int(rng.integers(1, 3)))
        dpu.process(dpu.batch)
        meta = dpu.batch.meta[: dpu.batch.n]
        assert ((meta[:, M_DROP] >= 0) & (meta[:, M_DROP] < drops.N_REASONS)).all()
    s = dpu.stats
    assert s.rx == 20 * dpu.batch.size
    assert s.rx == s.left + s.dropped
    assert s.left > 0 and s.dropped > 0


def test_batch_rejects_bad_sizes():
    with pytest.raises(ValueError):
        Batch(size=0)
    with pytest.raises(ValueError):
        Batch(max_frame=70000)
    b = Batch(size=1)
    b.append(udp(1))
    with pytest.raises(IndexError):
        b.append(udp(1))


def test_example_pipelines_load():
    for p in sorted(__import__("pathlib").Path(__file__).resolve().parent.parent.glob("pipelines/*.toml")):
        cfg = config.load(p)
        assert cfg.ports and cfg.flows.is_file()


def test_malformed_frames_forward_by_default_and_drop_on_request(tmp_path):
    bad = udp(30)[:14 + 20 + 4]            # IP total length past the frame
    write_pcap(tmp_path / "in.pcap", [udp(30), bad])
    fwd = Dpu.load(make_pipeline(tmp_path, inputs={"a": "in.pcap"})).run_pcaps(out_dir=tmp_path / "f")
    assert fwd.left == 2 and fwd.dropped == 0
    assert fwd.malformed_counts() == {"parse_bad_ip_len": 1}
    assert any("malformed parse_bad_ip_len" in line for line in fwd.table())
    strict = Dpu.load(make_pipeline(tmp_path, extra='malformed = "drop"', inputs={"a": "in.pcap"}))
    s = strict.run_pcaps(out_dir=tmp_path / "d")
    assert s.left == 1 and s.drop_counts() == {"parse_bad_ip_len": 1}


def test_malformed_setting_is_checked(tmp_path):
    from softdpu.errors import ConfigError
    with pytest.raises(ConfigError, match=r"p.toml:4: pipeline.malformed: expected \"forward\""):
        Dpu.load(make_pipeline(tmp_path, extra='\nmalformed = "ignore"'))


def test_a_rewrite_without_headroom_is_a_counted_drop(tmp_path):
    """A VLAN push on a packet whose start leaves no room for the tag: commit_failed, never a crash."""
    dpu = Dpu.load(make_pipeline(tmp_path, flows="in_port=1,actions=mod_vlan_vid:5,output:2\n"))
    frame = udp(20)
    dpu.batch.clear()
    dpu.batch.append(frame, in_port=1)
    dpu.batch.append(frame, in_port=1)
    from softdpu.batch import M_START
    dpu.batch.meta[1, M_START] = 2                     # only 2 bytes before the frame
    dpu.batch.data[1, 2:2 + len(frame)] = np.frombuffer(frame, np.uint8)
    dpu.process(dpu.batch)
    assert dpu.stats.left == 1
    assert dpu.stats.drop_counts() == {"commit_failed": 1}

"""Inbound ESP (RFC 4303 3.4): ESP for our SAs decrypted in place, before the tunnel and flow stages.

`esp_in_prepare`, for each parsed packet with an ESP header (in IP, or in
UDP 4500: the parser's F_ESP / F_ESP_NATT), not a fragment:
  - the SA: an "in" SA with this SPI and this destination address; none, and
    the destination is one of our SA addresses: esp_unknown_spi; none and not
    ours: the packet is someone else's ESP and goes on untouched
  - too short for ESP header, IV, pad length, next header and ICV: esp_truncated
  - IPv4 header checksum wrong: esp_bad_checksum
  - ESN: the high 32 bits reconstructed (replay.esn_high)
  - the anti-replay check before decryption: esp_replay / esp_too_old
  - a job: nonce = salt | IV, AAD = SPI | [seq high] | seq low, text and ICV in place
A plaintext IP packet that an inbound policy matches must have come through
its SA: esp_unprotected (as a host with OVS IPsec tunnels refuses
unencrypted VXLAN from a peer it has SAs with).

The crypto backend decrypts and checks the ICVs; then `esp_in_finish`:
  - ICV wrong: esp_icv (the window is not touched)
  - the window checked again (a duplicate earlier in the same batch) and updated
  - padding 1, 2, 3, ... and pad length inside the payload, else esp_bad_padding
  - tunnel mode: next header 4 or 41 (else esp_bad_inner); the inner IP packet
    gets the outer Ethernet header (EtherType of its family) in front of it
  - transport mode: the IP header (and Ethernet) moves up over ESP header and
    IV, its protocol becomes the next header, lengths and checksum fixed; IPv6
    with extension headers before ESP: esp_unsupported
  - an SA with inbound policies: the inner packet must match one of them, else
    esp_policy_mismatch
  - the row is parsed again (in_port stays the port it arrived on): the inner
    packet continues through the pipeline.
Drops are counted per SA (unknown SPI: in the table's last counter row).
With NAT-T in transport mode the inner TCP/UDP checksum is recomputed (RFC
3948 3.1.2: a NAT may have changed the addresses it covers; a UDP checksum of
0, as VXLAN's, stays 0).
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_FLAGS, M_L3, M_L4, M_L5, M_LEN, M_PARSE_ERR, M_START
from softdpu.headers import esp as esp_h
from softdpu.headers import ipv4 as ip4
from softdpu.headers.bytes import be16, be32, be64, put16, u8
from softdpu.stages.esp import replay
from softdpu.stages.esp.encrypt import write_job
from softdpu.stages.esp.jobs import IV_LEN, J_ESP, J_OK, J_ROW, J_SA, J_SEQ, J_TEXT, J_TEXT_LEN, TAG_LEN
from softdpu.stages.esp.sa_table import (C_BYTES, C_DROPS, C_PACKETS, S_ESN, S_FAMILY, S_LOCAL_HI, S_LOCAL_LO,
                                         S_NBLOCKS, S_POLICIES, S_SPI, S_TUNNEL, S_WINDOW, spi_slot)
from softdpu.stages.esp.selectors import DIR_IN, P_DIR, P_SA, ip_fields, matches
from softdpu.stages.parse import F_ESP, F_ESP_NATT, F_FRAG, F_IPV4, F_IPV6, parse_row


@njit(alloc=False)
def _find_sa(sa, spi_hash, spi, family, dhi, dlo):
    mask = spi_hash.shape[0] - 1
    h = spi_slot(spi, mask)
    for _ in range(spi_hash.shape[0]):
        t = spi_hash[h]
        if t < 0:
            return -1
        if (sa[t, S_SPI] == spi and sa[t, S_FAMILY] == family and sa[t, S_LOCAL_HI] == dhi
                and sa[t, S_LOCAL_LO] == dlo):
            return t
        h = (h + 1) & mask
    return -1


@njit(alloc=False)
def _ours(addrs, n_addrs, family, dhi, dlo):
    for a in range(n_addrs):
        if addrs[a, 0] == family and addrs[a, 1] == dhi and addrs[a, 2] == dlo:
            return True
    return False


@njit(alloc=False)
def _in_policy(pol, n_pol, t, family, proto, sport, dport, shi, slo, dhi, dlo):
    """The SA of the first inbound policy that matches (of SA t only when t >= 0), or -1."""
    for k in range(n_pol):
        if pol[k, P_DIR] != DIR_IN or (t >= 0 and pol[k, P_SA] != t):
            continue
        if matches(pol, k, family, proto, sport, dport, shi, slo, dhi, dlo, 0):
            return pol[k, P_SA]
    return -1


@njit(alloc=False)
def _drop(meta, counters, i, t, code):
    meta[i, M_DROP] = code
    counters[t, C_DROPS + code] += 1


@njit(alloc=False)
def esp_in_prepare(data, meta, n, sa, seqs, bitmap, spi_hash, addrs, n_addrs, pol, n_pol, n_in_pol,
                   jobs, nonce, aad, counters):
    """Find, check and queue the ESP packets for us (module doc).  -> the number of jobs."""
    nobody = counters.shape[0] - 1
    nj = 0
    for i in range(n):
        if meta[i, M_DROP] != 0:
            continue
        flags = meta[i, M_FLAGS]
        if not (flags & (F_IPV4 | F_IPV6)):
            continue
        l3 = meta[i, M_L3]
        start = meta[i, M_START]
        end = start + meta[i, M_LEN]
        if not (flags & F_ESP) or (flags & F_FRAG):
            if n_in_pol > 0:
                l3f, family, _hl, _e, proto, sport, dport, shi, slo, dhi, dlo, _o = ip_fields(data, i, start, end)
                if l3f >= 0:
                    t = _in_policy(pol, n_pol, -1, family, proto, sport, dport, shi, slo, dhi, dlo)
                    if t >= 0:
                        _drop(meta, counters, i, t, drops.ESP_UNPROTECTED)
            continue
        esp = meta[i, M_L5]
        if (flags & F_ESP_NATT) and be16(data, i, meta[i, M_L4] + 2) != esp_h.UDP_PORT_NATT:
            continue                                 # only UDP to port 4500 is NAT-T ESP for us
        if flags & F_IPV4:
            family = 4
            dhi, dlo = np.int64(0), be32(data, i, l3 + 16)
            ip_end = l3 + be16(data, i, l3 + 2)
        else:
            family = 6
            dhi, dlo = np.int64(be64(data, i, l3 + 24)), np.int64(be64(data, i, l3 + 32))
            ip_end = l3 + 40 + be16(data, i, l3 + 4)
        if flags & F_ESP_NATT:                       # the UDP length bounds ESP in UDP (as a host's stack)
            ip_end = min(ip_end, meta[i, M_L4] + be16(data, i, meta[i, M_L4] + 4))
        spi = be32(data, i, esp)
        t = _find_sa(sa, spi_hash, spi, family, dhi, dlo)
        if t < 0:
            if _ours(addrs, n_addrs, family, dhi, dlo):
                _drop(meta, counters, i, nobody, drops.ESP_UNKNOWN_SPI)
            continue
        if meta[i, M_PARSE_ERR] != 0 or ip_end > end or esp + 8 + IV_LEN + 2 + TAG_LEN > ip_end:
            _drop(meta, counters, i, t, drops.ESP_TRUNCATED)
            continue
        if family == 4 and ip4.checksum(data, i, l3, (u8(data, i, l3) & 0xF) * 4) != 0:
            _drop(meta, counters, i, t, drops.ESP_BAD_CHECKSUM)
            continue
        low = be32(data, i, esp + 4)
        window = sa[t, S_WINDOW]
        if sa[t, S_ESN]:
            hi = replay.esn_high(seqs[t], window, low)
            if hi < 0:
                _drop(meta, counters, i, t, drops.ESP_TOO_OLD)
                continue
            q = (hi << 32) | low
        else:
            q = low
        code = replay.check(bitmap, t, seqs[t], window, sa[t, S_NBLOCKS], q)
        if code != 0:
            _drop(meta, counters, i, t, code)
            continue
        text = esp + 8 + IV_LEN
        write_job(jobs, nj, nonce, aad, sa, t, i, esp, text, ip_end - TAG_LEN - text, q)
        for b in range(8):                           # the nonce's IV part is the packet's
            nonce[nj, 4 + b] = data[i, esp + 8 + b]
        jobs[nj, J_OK] = -1
        nj += 1
    return nj


@njit(alloc=False)
def _natt_l4_checksum(data, i, l3, hl, proto, length):
    """Transport mode through a NAT (RFC 3948 3.1.2): the inner TCP/UDP checksum covers the
    addresses the peer sent from, which a NAT may have changed: recompute it over the IPv4
    header as it arrived (a UDP checksum of 0 stays 0).  The ICV has vouched for the data."""
    l4 = l3 + hl
    if proto == 6 and length >= 20:
        c = l4 + 16
    elif proto == 17 and length >= 8 and be16(data, i, l4 + 6) != 0:
        c = l4 + 6
    else:
        return
    put16(data, i, c, 0)
    acc = ip4.pseudo_sum(be32(data, i, l3 + 12), be32(data, i, l3 + 16), proto, length)
    v = (~ip4.fold(ip4.ones_sum(data, i, l4, length, acc))) & 0xFFFF
    put16(data, i, c, 0xFFFF if v == 0 and proto == 17 else v)


@njit(alloc=False)
def _unwrap(data, meta, i, sa, t, esp, text, plain_len, nh):
    """Take ESP off row i (module doc).  -> 0 or a drop code."""
    start = meta[i, M_START]
    l3 = meta[i, M_L3]
    if sa[t, S_TUNNEL]:
        if nh != 4 and nh != 41:
            return drops.ESP_BAD_INNER
        l2 = l3 - start
        for b in range(l2 - 1, -1, -1):               # Ethernet header up to the inner packet
            data[i, text - l2 + b] = data[i, start + b]
        put16(data, i, text - 2, 0x0800 if nh == 4 else 0x86DD)
        meta[i, M_START] = text - l2
        meta[i, M_LEN] = l2 + plain_len
        return 0
    v4 = u8(data, i, l3) >> 4 == 4
    if v4:
        hl = (u8(data, i, l3) & 0xF) * 4
        natt = u8(data, i, l3 + 9) == 17
    else:
        hl = 40
        natt = False
        if esp != l3 + 40:
            return drops.ESP_UNSUPPORTED
    shift = text - (l3 + hl)
    for b in range(l3 + hl - 1, start - 1, -1):      # Ethernet + IP header up over ESP and IV
        data[i, b + shift] = data[i, b]
    nl3 = l3 + shift
    if v4:
        put16(data, i, nl3 + 2, hl + plain_len)
        put16(data, i, nl3 + 8, (u8(data, i, nl3 + 8) << 8) | nh)
        put16(data, i, nl3 + 10, 0)
        put16(data, i, nl3 + 10, ip4.checksum(data, i, nl3, hl))
        if natt:
            _natt_l4_checksum(data, i, nl3, hl, nh, plain_len)
    else:
        put16(data, i, nl3 + 4, plain_len)
        data[i, nl3 + 6] = np.uint8(nh)
    meta[i, M_START] = start + shift
    meta[i, M_LEN] = l3 - start + hl + plain_len
    return 0


@njit(alloc=False)
def esp_in_finish(data, meta, key, jobs, n_jobs, sa, seqs, bitmap, pol, n_pol, drop_malformed, counters):
    """Verdicts, window updates, padding, unwrapping and re-parsing of the decrypted jobs."""
    for j in range(n_jobs):
        i = jobs[j, J_ROW]
        t = jobs[j, J_SA]
        if jobs[j, J_OK] != 1:
            _drop(meta, counters, i, t, drops.ESP_ICV)
            continue
        q = jobs[j, J_SEQ]
        code = replay.check(bitmap, t, seqs[t], sa[t, S_WINDOW], sa[t, S_NBLOCKS], q)
        if code != 0:
            _drop(meta, counters, i, t, code)
            continue
        replay.update(bitmap, t, seqs, sa[t, S_NBLOCKS], q)
        text = jobs[j, J_TEXT]
        tend = text + jobs[j, J_TEXT_LEN]
        pad = u8(data, i, tend - 2)
        nh = u8(data, i, tend - 1)
        ok = pad + 2 <= jobs[j, J_TEXT_LEN]
        if ok:
            for k in range(pad):
                if u8(data, i, tend - 2 - pad + k) != k + 1:
                    ok = False
                    break
        if not ok:
            _drop(meta, counters, i, t, drops.ESP_BAD_PADDING)
            continue
        plain_len = jobs[j, J_TEXT_LEN] - 2 - pad
        code = _unwrap(data, meta, i, sa, t, jobs[j, J_ESP], text, plain_len, nh)
        if code != 0:
            _drop(meta, counters, i, t, code)
            continue
        if sa[t, S_POLICIES] > 0:
            start = meta[i, M_START]
            l3f, family, _hl, _e, proto, sport, dport, shi, slo, dhi, dlo, _o = ip_fields(
                data, i, start, start + meta[i, M_LEN])
            if l3f < 0 or _in_policy(pol, n_pol, t, family, proto, sport, dport, shi, slo, dhi, dlo) < 0:
                _drop(meta, counters, i, t, drops.ESP_POLICY_MISMATCH)
                continue
        counters[t, C_PACKETS] += 1
        counters[t, C_BYTES] += plain_len
        parse_row(data, meta, key, i, drop_malformed)

"""Outbound ESP (RFC 4303 3.3): the tx entries an "out" policy selects, framed for encryption.

For each tx entry (after the tunnel encapsulation, so a VXLAN/Geneve port's
outer UDP packet is what a tunnel's policy sees), the first out policy that
matches the packet's selectors (and output port) names the SA.  The packet
is rewritten in its slot, in place, headers moved into the headroom:

  transport   [L2][IP hdr][payload]          -> [L2][IP hdr'][UDP 4500]?[ESP][IV][payload][trailer][ICV]
  tunnel      [L2][inner IP packet]          -> [L2'][outer IP][UDP 4500]?[ESP][IV][inner IP][trailer][ICV]

    ESP       SPI, sequence number (low 32 bits): the SA's counter + 1; the SA
              stops at 2^32 - 1 (2^63 - 1 with ESN): esp_seq_exhausted, never wraps
    IV        the 64-bit sequence number: unique per packet under a key (RFC 4106 3.1)
    trailer   padding 1, 2, 3, ... to a 4-byte boundary, pad length, next header
              (the transport payload's protocol; 4 or 41 in tunnel mode)
    ICV       16 bytes, written by the crypto backend (jobs.py)
    IP hdr'   transport: protocol 50 (17 with NAT-T), lengths, checksum
    outer IP  tunnel: SA local -> remote, TOS/traffic class copied from the inner
              packet, IPv4 DF copied, ID = low 16 bits of the sequence number, TTL
              from the SA; L2' is the packet's own Ethernet header (the flows chose
              its MACs), EtherType of the outer family
    UDP       NAT-T (RFC 3948): natt_sport -> natt_dport, checksum 0

Ethernet padding after the IP packet is dropped.  A row that other tx
entries also use is copied to a clone row first.  A copy that cannot be
protected is not sent; if it was the packet's last way out the packet is
dropped: esp_mtu (IP packet over the port's MTU), esp_no_room (no headroom,
tailroom or clone row), esp_unsupported (a transport-mode SA and an IPv4
fragment or IPv6 extension headers), esp_seq_exhausted.  Counted per SA.
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_LEN, M_ORIGIN, M_START
from softdpu.headers import ipv4 as ip4
from softdpu.headers.bytes import be16, put16, put32, u8
from softdpu.stages.esp.jobs import (IV_LEN, J_AAD_LEN, J_ESP, J_OK, J_ROW, J_SA, J_SEQ, J_TEXT, J_TEXT_LEN,
                                     TAG_LEN)
from softdpu.stages.esp.sa_table import (C_BYTES, C_DROPS, C_PACKETS, S_DPORT, S_ESN, S_FAMILY, S_LOCAL_HI,
                                         S_LOCAL_LO, S_NATT, S_REMOTE_HI, S_REMOTE_LO, S_SALT, S_SPI, S_SPORT,
                                         S_TTL, S_TUNNEL)
from softdpu.stages.esp.selectors import DIR_OUT, P_DIR, P_SA, ip_fields, matches

SEQ_MAX = 0xFFFFFFFF
ESN_MAX = 0x7FFFFFFFFFFFFFFF


@njit(alloc=False, inline=True)
def _put64(data, r, off, v):
    put32(data, r, off, (v >> 32) & 0xFFFFFFFF)
    put32(data, r, off + 4, v & 0xFFFFFFFF)


@njit(alloc=False)
def _policy(pol, n_pol, family, proto, sport, dport, shi, slo, dhi, dlo, port):
    for k in range(n_pol):
        if pol[k, P_DIR] == DIR_OUT and matches(pol, k, family, proto, sport, dport, shi, slo, dhi, dlo, port):
            return k
    return -1


@njit(alloc=False)
def write_job(jobs, nj, nonce, aad, sa, t, row, esp, text, text_len, q):
    """Job nj: nonce = salt | IV (the packet's 8 IV bytes are q), AAD = SPI | [seq hi] | seq lo."""
    jobs[nj, J_ROW] = row
    jobs[nj, J_SA] = t
    jobs[nj, J_TEXT] = text
    jobs[nj, J_TEXT_LEN] = text_len
    jobs[nj, J_SEQ] = q
    jobs[nj, J_ESP] = esp
    salt = sa[t, S_SALT]
    for b in range(4):
        nonce[nj, b] = np.uint8((salt >> (24 - 8 * b)) & 0xFF)
    for b in range(8):
        nonce[nj, 4 + b] = np.uint8((q >> (56 - 8 * b)) & 0xFF)
    spi = sa[t, S_SPI]
    for b in range(4):
        aad[nj, b] = np.uint8((spi >> (24 - 8 * b)) & 0xFF)
    o = 4
    if sa[t, S_ESN]:
        for b in range(4):
            aad[nj, 4 + b] = np.uint8((q >> (56 - 8 * b)) & 0xFF)
        o = 8
    for b in range(4):
        aad[nj, o + b] = np.uint8((q >> (24 - 8 * b)) & 0xFF)
    jobs[nj, J_AAD_LEN] = o + 4


@njit(alloc=False)
def protect(data, meta, r, sa, t, seqs, mtu, jobs, nj, nonce, aad, l3, family, hl, ip_end, proto, odd):
    """Frame row r for SA t (module doc) and append job nj; the packet's selector fields
    (selectors.ip_fields) are already read.  -> 0, or a drop code."""
    start = meta[r, M_START]
    tunnel = sa[t, S_TUNNEL] != 0
    natt = 8 if sa[t, S_NATT] else 0
    if tunnel:
        ohl = 20 if sa[t, S_FAMILY] == 4 else 40
        payload = l3
        keep_end = l3
        nh = 4 if family == 4 else 41
    else:
        if odd:
            return drops.ESP_UNSUPPORTED
        ohl = hl
        payload = l3 + hl
        keep_end = payload
        nh = proto
    payload_len = ip_end - payload
    pad = (4 - (payload_len + 2) % 4) % 4
    text_len = payload_len + pad + 2
    head = (ohl if tunnel else 0) + natt + 8 + IV_LEN
    ip_total = ohl + natt + 8 + IV_LEN + text_len + TAG_LEN
    if mtu > 0 and ip_total > mtu:
        return drops.ESP_MTU
    if start < head or ip_end + pad + 2 + TAG_LEN > data.shape[1]:
        return drops.ESP_NO_ROOM
    q = seqs[t]
    if q >= (ESN_MAX if sa[t, S_ESN] else SEQ_MAX):
        return drops.ESP_SEQ_EXHAUSTED
    q += 1
    seqs[t] = q
    inner_tos = u8(data, r, l3 + 1) if family == 4 else (be16(data, r, l3) >> 4) & 0xFF
    inner_df = be16(data, r, l3 + 6) & ip4.FLAG_DF if family == 4 else 0
    for b in range(start, keep_end):                 # headers back into the headroom (ascending: safe)
        data[r, b - head] = data[r, b]
    s = start - head
    nl3 = l3 - head
    out_family = sa[t, S_FAMILY] if tunnel else family
    next_proto = 17 if natt else 50
    if tunnel:
        put16(data, r, nl3 - 2, 0x0800 if out_family == 4 else 0x86DD)
        if out_family == 4:
            put16(data, r, nl3, 0x4500 | inner_tos)
            put16(data, r, nl3 + 4, q & 0xFFFF)
            put16(data, r, nl3 + 6, inner_df)
            put16(data, r, nl3 + 8, (sa[t, S_TTL] << 8) | next_proto)
            put32(data, r, nl3 + 12, sa[t, S_LOCAL_LO] & 0xFFFFFFFF)
            put32(data, r, nl3 + 16, sa[t, S_REMOTE_LO] & 0xFFFFFFFF)
        else:
            put32(data, r, nl3, (6 << 28) | (inner_tos << 20))
            put16(data, r, nl3 + 6, (next_proto << 8) | sa[t, S_TTL])
            _put64(data, r, nl3 + 8, sa[t, S_LOCAL_HI])
            _put64(data, r, nl3 + 16, sa[t, S_LOCAL_LO])
            _put64(data, r, nl3 + 24, sa[t, S_REMOTE_HI])
            _put64(data, r, nl3 + 32, sa[t, S_REMOTE_LO])
    if out_family == 4:
        put16(data, r, nl3 + 2, ip_total)
        put16(data, r, nl3 + 8, (u8(data, r, nl3 + 8) << 8) | next_proto)
        put16(data, r, nl3 + 10, 0)
        put16(data, r, nl3 + 10, ip4.checksum(data, r, nl3, ohl))
    else:
        put16(data, r, nl3 + 4, ip_total - 40)
        data[r, nl3 + 6] = np.uint8(next_proto)
    esp = nl3 + ohl
    if natt:
        put16(data, r, esp, sa[t, S_SPORT])
        put16(data, r, esp + 2, sa[t, S_DPORT])
        put16(data, r, esp + 4, ip_total - ohl)
        put16(data, r, esp + 6, 0)
        esp += 8
    put32(data, r, esp, sa[t, S_SPI])
    put32(data, r, esp + 4, q & 0xFFFFFFFF)
    _put64(data, r, esp + 8, q)
    for k in range(pad):
        data[r, ip_end + k] = np.uint8(k + 1)
    data[r, ip_end + pad] = np.uint8(pad)
    data[r, ip_end + pad + 1] = np.uint8(nh)
    write_job(jobs, nj, nonce, aad, sa, t, r, esp, payload, text_len, q)
    jobs[nj, J_OK] = 0
    meta[r, M_START] = s
    meta[r, M_LEN] = nl3 - s + ip_total
    return 0


@njit(alloc=False)
def _copy_row(data, meta, src, dst):
    for m in range(meta.shape[1]):
        meta[dst, m] = meta[src, m]
    s = meta[src, M_START]
    for b in range(s, s + meta[src, M_LEN]):
        data[dst, b] = data[src, b]


@njit(alloc=False)
def esp_out(data, meta, tx, n_tx, n, clone_base, clones, sa, seqs, pol, n_pol, port_mtu, refs,
            jobs, nonce, aad, counters, state):
    """Frame the tx entries that out policies select (module doc).  clones[0]: clone rows used
    so far (updated); refs: int64[rows, 2] zeroed scratch.  state[0] <- the new tx length,
    state[1] <- the number of jobs."""
    for j in range(n_tx):
        r = tx[j, 0]
        refs[r, 0] += 1
        refs[r if r < n else meta[r, M_ORIGIN], 1] += 1
    out = 0
    nj = 0
    for j in range(n_tx):
        r = tx[j, 0]
        p = tx[j, 1]
        start = meta[r, M_START]
        l3, family, hl, ip_end, proto, sport, dport, shi, slo, dhi, dlo, odd = ip_fields(
            data, r, start, start + meta[r, M_LEN])
        k = -1 if l3 < 0 else _policy(pol, n_pol, family, proto, sport, dport, shi, slo, dhi, dlo, p)
        if k < 0:
            for c in range(tx.shape[1]):
                tx[out, c] = tx[j, c]
            out += 1
            continue
        t = pol[k, P_SA]
        origin = r if r < n else meta[r, M_ORIGIN]
        row = r
        code = 0
        if refs[r, 0] > 1:
            c = clone_base + clones[0]
            if c >= data.shape[0]:
                code = drops.ESP_NO_ROOM
            else:
                _copy_row(data, meta, r, c)
                meta[c, M_ORIGIN] = origin
                clones[0] += 1
                row = c
        if code == 0:          # a clone row holds the same bytes at the same offsets
            code = protect(data, meta, row, sa, t, seqs, port_mtu[p], jobs, nj, nonce, aad, l3, family, hl,
                           ip_end, proto, odd)
        if code == 0:
            nj += 1
            if row == r:
                refs[r, 0] = 0
            else:
                refs[r, 0] -= 1
            for c in range(2, tx.shape[1]):
                tx[out, c] = tx[j, c]
            tx[out, 0] = row
            tx[out, 1] = p
            out += 1
            counters[t, C_PACKETS] += 1
            counters[t, C_BYTES] += meta[row, M_LEN]
        else:
            counters[t, C_DROPS + code] += 1
            refs[r, 0] -= 1
            refs[origin, 1] -= 1
            if refs[origin, 1] == 0 and meta[origin, M_DROP] == 0:
                meta[origin, M_DROP] = code
    for r in range(n):
        refs[r, 0] = 0
        refs[r, 1] = 0
    for r in range(clone_base, min(clone_base + clones[0], refs.shape[0])):
        refs[r, 0] = 0
        refs[r, 1] = 0
    state[0] = out
    state[1] = nj

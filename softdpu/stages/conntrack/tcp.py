"""TCP connection tracking: Open vSwitch's conntrack-tcp (from OpenBSD pf) state machine
and sequence-window tracking, on one entry's ent row.

Each direction is a peer: peer 0 sent the connection's first packet, peer 1
answers.  A peer keeps (stored in ent[e, E_TCP + 2p] and [E_TCP + 2p + 1]):

  seqlo    the highest sequence number it sent, plus its length (Linux td_end)
  seqhi    the highest sequence the other end ACKed plus its window: the most
           it may send (Linux td_maxend)
  max_win  the largest window it advertised, unscaled (td_maxwin)
  wscale   its window-scale option | WS_FLAG when it sent one, WS_UNKNOWN when
           the connection was picked up mid-stream (td_scale)
  state    TCPS_* (OVS's ct_dpif_tcp_state order, which the rules compare)

A packet is valid (+est) when its flags are legal and its sequence range
lies in the receiver's window: end <= seqhi, seq >= seqlo - receiver's
max window (retransmissions up to one window back), its ACK not more than
MAXACKWINDOW behind or (scaled) ahead of what the other end sent, and a
RST's sequence exactly seqlo (or +-1).  A packet outside that, but within
MAXACKWINDOW of the window while the connection is still being set up or is
closed on one side, is also accepted without refreshing the timeout (pf's
"loose" case: shotgunned SYNs, connections picked up mid-stream, spurious
FINs after close).  Anything else is +inv.  SYN / FIN move a peer to
SYN_SENT / CLOSING; an ACK of a SYN_SENT (CLOSING) peer moves it to
ESTABLISHED (FIN_WAIT_2); RST moves both to TIME_WAIT.  A SYN (without ACK)
when both peers are at FIN_WAIT_2 or later reopens the port: the old entry
goes and a new connection starts (TIME_WAIT reuse).  A SYN (without ACK)
from an end still at SYN_SENT or before is +new and changes nothing but that
end's state (SYN_SENT) and the timeout (OVS's CT_UPDATE_VALID_NEW): a
retransmitted SYN, or the crossing SYN of a simultaneous open (whose SYN-ACKs
then establish both ends).

A mid-stream first packet (no SYN) may create a connection (as OVS): both
peers' window scale is then unknown and windows are checked with the
maximum scale (liberal).  A SYN-ACK, or a packet with illegal flags, may not.
"""
import numpy as np

from softdpu._jit import njit
from softdpu.headers.bytes import be16, be32, u8
from softdpu.stages.conntrack.table import E_EXP, E_INFO, E_TCP, S_TMO
from softdpu.stages.conntrack.timeouts import (TM_TCP_CLOSED, TM_TCP_CLOSING, TM_TCP_ESTABLISHED,
                                               TM_TCP_FIN_WAIT, TM_TCP_FIRST_PACKET, TM_TCP_OPENING)

(TCPS_CLOSED, TCPS_LISTEN, TCPS_SYN_SENT, TCPS_SYN_RECV, TCPS_ESTABLISHED, TCPS_CLOSE_WAIT,
 TCPS_FIN_WAIT_1, TCPS_CLOSING, TCPS_LAST_ACK, TCPS_FIN_WAIT_2, TCPS_TIME_WAIT) = range(11)
TCPS_NAMES = ("CLOSED", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT",
              "FIN_WAIT_1", "CLOSING", "LAST_ACK", "FIN_WAIT_2", "TIME_WAIT")

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
WS_FLAG = 0x80
WS_UNKNOWN = 0x40
WS_MASK = 0xF
MAX_WSCALE = 14
MAXACKWINDOW = 0xFFFF + 1500
M32 = 0xFFFFFFFF

# update results, as OVS's ct_update_res
UPD_INVALID = 0
UPD_VALID = 1
UPD_NEW = 2          # reopen: end this connection, start a new one
UPD_VALID_NEW = 3


@njit(alloc=False, inline=True)
def _sdiff(a, b):
    """(a - b) as a signed 32-bit difference of sequence numbers."""
    d = (a - b) & M32
    return d - (1 << 32) if d >= (1 << 31) else d


@njit(alloc=False, inline=True)
def invalid_flags(f):
    """pf's check: SYN with RST or FIN; neither ACK nor RST; FIN/PSH/URG without ACK."""
    if f & SYN:
        if f & (RST | FIN):
            return True
    elif not (f & (ACK | RST)):
        return True
    if not (f & ACK) and (f & (FIN | PSH | URG)):
        return True
    return False


@njit(alloc=False, inline=True)
def valid_new(f):
    """May this packet start a connection?  Not with illegal flags, not a SYN-ACK."""
    return not invalid_flags(f) and not ((f & SYN) and (f & ACK))


@njit(alloc=False)
def get_wscale(data, r, l4, doff):
    """The window-scale option of a TCP header, | WS_FLAG; 0 if absent."""
    n = doff - 20
    o = l4 + 20
    ws = 0
    while n >= 3:
        kind = u8(data, r, o)
        if kind == 0:
            return ws
        if kind == 1:
            o += 1
            n -= 1
            continue
        if kind == 3:
            ws = min(u8(data, r, o + 2), MAX_WSCALE) | WS_FLAG
        ln = u8(data, r, o + 1)
        if ln < 2:
            ln = 2
        n -= ln
        o += ln
    return ws


@njit(alloc=False, inline=True)
def fields(data, r, l4, ip_end):
    """(flags, seq, ack, win, payload length, data offset) of the TCP header at l4."""
    doff = (u8(data, r, l4 + 12) >> 4) * 4
    return (be16(data, r, l4 + 12) & 0xFFF, be32(data, r, l4 + 4), be32(data, r, l4 + 8),
            be16(data, r, l4 + 14), ip_end - l4 - doff, doff)


@njit(alloc=False, inline=True)
def _get(ent, u, p):
    a = ent[u, E_TCP + 2 * p]
    b = ent[u, E_TCP + 2 * p + 1]
    return (a >> 32) & M32, a & M32, b & 0xFFFF, (b >> 16) & 0xFF, (b >> 24) & 0xFF


@njit(alloc=False, inline=True)
def _put(ent, u, p, seqlo, seqhi, max_win, wscale, state):
    ent[u, E_TCP + 2 * p] = ((seqlo & M32) << 32) | (seqhi & M32)
    ent[u, E_TCP + 2 * p + 1] = (max_win & 0xFFFF) | (wscale << 16) | (state << 24)


@njit(alloc=False, inline=True)
def _set_tm(ent, u, st, tm, now):
    ent[u, E_EXP] = now + st[S_TMO + tm]
    ent[u, E_INFO] = (ent[u, E_INFO] & ~(0xFF << 16)) | (tm << 16)


@njit(alloc=False)
def tcp_new(ent, e, st, data, r, l4, ip_end, now):
    """Initialise entry e's peers from the connection's first packet (OVS tcp_new_conn)."""
    u = np.uint64(e)
    f, seq, ack, win, plen, doff = fields(data, r, l4, ip_end)
    seqhi = seq + plen + 1
    if f & SYN:
        seqhi += 1
        ws = get_wscale(data, r, l4, doff)
        dws = 0
    else:
        ws = WS_UNKNOWN
        dws = WS_UNKNOWN
    max_win = max(win, 1)
    if ws & WS_MASK:
        s = ws & WS_MASK
        max_win = (max_win + (1 << s) - 1) >> s
    if f & FIN:
        seqhi += 1
    _put(ent, u, 0, seq, seqhi, max_win, ws, TCPS_SYN_SENT)
    _put(ent, u, 1, 0, 1, 1, dws, TCPS_CLOSED)
    _set_tm(ent, u, st, TM_TCP_FIRST_PACKET, now)


@njit(alloc=False)
def tcp_update(ent, e, st, data, r, l4, ip_end, reply, now):
    """Track one packet of a known connection (OVS tcp_conn_update).  -> UPD_*"""
    u = np.uint64(e)
    f, seq, ack, win, plen, doff = fields(data, r, l4, ip_end)
    if invalid_flags(f):
        return UPD_INVALID
    sp = 1 if reply else 0
    dp = 1 - sp
    s_lo, s_hi, s_mw, s_ws, s_st = _get(ent, u, sp)
    d_lo, d_hi, d_mw, d_ws, d_st = _get(ent, u, dp)
    if (f & (SYN | ACK)) == SYN and d_st >= TCPS_FIN_WAIT_2 and s_st >= TCPS_FIN_WAIT_2:
        _put(ent, u, sp, s_lo, s_hi, s_mw, s_ws, TCPS_CLOSED)
        _put(ent, u, dp, d_lo, d_hi, d_mw, d_ws, TCPS_CLOSED)
        return UPD_NEW
    if (f & (SYN | ACK)) == SYN and s_st <= TCPS_SYN_SENT:
        # a SYN from an end that has sent nothing else (a retransmitted SYN, or the crossing
        # SYN of a simultaneous open): +new, nothing else tracked (OVS tcp_conn_update)
        _put(ent, u, sp, s_lo, s_hi, s_mw, s_ws, TCPS_SYN_SENT)
        _set_tm(ent, u, st, TM_TCP_FIRST_PACKET, now)
        return UPD_VALID_NEW
    sws = 0
    dws = 0
    if (s_ws & WS_FLAG) and (d_ws & WS_FLAG) and not (f & SYN):
        sws = s_ws & WS_MASK
        dws = d_ws & WS_MASK
    elif (s_ws & WS_UNKNOWN) and (d_ws & WS_UNKNOWN) and not (f & SYN):
        sws = MAX_WSCALE
        dws = MAX_WSCALE
    orig_seq = seq
    check_ackskew = True
    end = (seq + plen) & M32
    if s_st < TCPS_SYN_SENT:
        # the first packet from this end
        if f & SYN:
            end = (end + 1) & M32
            if d_ws & WS_FLAG:
                s_ws = get_wscale(data, r, l4, doff)
                if s_ws & WS_FLAG:
                    sws = s_ws & WS_MASK
                    win = (win + (1 << sws) - 1) >> sws
                    dws = d_ws & WS_MASK
                else:
                    d_mw = (d_mw << (d_ws & WS_MASK)) & 0xFFFF   # OVS's uint16 field
                    d_ws = 0
        if f & FIN:
            end = (end + 1) & M32
        s_lo = seq
        s_st = TCPS_SYN_SENT
        w = max(1, d_mw << dws)
        if s_hi == 1 or _sdiff((end + w) & M32, s_hi) >= 0:
            s_hi = (end + w) & M32
            check_ackskew = False
        if win > s_mw:
            s_mw = win
    else:
        if f & SYN:
            end = (end + 1) & M32
        if f & FIN:
            end = (end + 1) & M32
    if (f & ACK) == 0:
        ack = d_lo
    elif ack == 0 and (f & (ACK | RST)) == (ACK | RST):
        ack = d_lo
    if seq == end:
        seq = s_lo
        end = seq
    ackskew = _sdiff(d_lo, ack) if check_ackskew else 0
    win_s = win << sws
    if (_sdiff(s_hi, end) >= 0
            and _sdiff(seq, (s_lo - (d_mw << dws)) & M32) >= 0
            and ackskew >= -MAXACKWINDOW
            and ackskew <= (MAXACKWINDOW << sws)
            and ((f & RST) == 0 or orig_seq == s_lo or orig_seq == ((s_lo + 1) & M32)
                 or ((orig_seq + 1) & M32) == s_lo)):
        if s_mw < win:
            s_mw = win
        if _sdiff(end, s_lo) > 0:
            s_lo = end
        if _sdiff((ack + win_s) & M32, d_hi) >= 0:
            d_hi = (ack + max(win_s, 1)) & M32
        if (f & SYN) and s_st < TCPS_SYN_SENT:
            s_st = TCPS_SYN_SENT
        if (f & FIN) and s_st < TCPS_CLOSING:
            s_st = TCPS_CLOSING
        if f & ACK:
            if d_st == TCPS_SYN_SENT:
                d_st = TCPS_ESTABLISHED
            elif d_st == TCPS_CLOSING:
                d_st = TCPS_FIN_WAIT_2
        if f & RST:
            s_st = TCPS_TIME_WAIT
            d_st = TCPS_TIME_WAIT
        if s_st >= TCPS_FIN_WAIT_2 and d_st >= TCPS_FIN_WAIT_2:
            tm = TM_TCP_CLOSED
        elif s_st >= TCPS_CLOSING and d_st >= TCPS_CLOSING:
            tm = TM_TCP_FIN_WAIT
        elif s_st < TCPS_ESTABLISHED or d_st < TCPS_ESTABLISHED:
            tm = TM_TCP_OPENING
        elif s_st >= TCPS_CLOSING or d_st >= TCPS_CLOSING:
            tm = TM_TCP_CLOSING
        else:
            tm = TM_TCP_ESTABLISHED
        _set_tm(ent, u, st, tm, now)
    elif ((d_st < TCPS_SYN_SENT or d_st >= TCPS_FIN_WAIT_2 or s_st >= TCPS_FIN_WAIT_2)
          and _sdiff((s_hi + MAXACKWINDOW) & M32, end) >= 0
          and _sdiff(seq, (s_lo - MAXACKWINDOW) & M32) >= 0):
        # pf's loose case: no timeout refresh
        if s_mw < win:
            s_mw = win
        if _sdiff(end, s_lo) > 0:
            s_lo = end
        if _sdiff((ack + win_s) & M32, d_hi) >= 0:
            d_hi = (ack + max(win_s, 1)) & M32
        if (f & FIN) and s_st < TCPS_CLOSING:
            s_st = TCPS_CLOSING
        if f & RST:
            s_st = TCPS_TIME_WAIT
            d_st = TCPS_TIME_WAIT
    else:
        # the first-packet bookkeeping above sticks even when the packet is invalid (as OVS)
        _put(ent, u, sp, s_lo, s_hi, s_mw, s_ws, s_st)
        _put(ent, u, dp, d_lo, d_hi, d_mw, d_ws, d_st)
        return UPD_INVALID
    _put(ent, u, sp, s_lo, s_hi, s_mw, s_ws, s_st)
    _put(ent, u, dp, d_lo, d_hi, d_mw, d_ws, d_st)
    return UPD_VALID

"""Drop reasons: why a packet did not leave.

Every packet that enters a pipeline either leaves through a port or is
counted under exactly one of these reasons.  Codes are small integers stored
in the batch's `drop` metadata column; 0 means "not dropped".  Later stages
append reasons here; the order only fixes the numbers.
"""

REASONS = (
    ("none", "not dropped"),
    # receive
    ("frame_too_big", "frame longer than the pipeline's max_frame (raise [pipeline] max_frame)"),
    ("snaplen_truncated", "capture record shorter than the frame on the wire (snaplen)"),
    # parse
    ("parse_trunc_l2", "frame shorter than an Ethernet header"),
    ("parse_trunc_vlan", "802.1Q/802.1ad tag cut short"),
    ("parse_trunc_arp", "ARP header cut short or not Ethernet/IPv4"),
    ("parse_trunc_ip", "IP header cut short"),
    ("parse_bad_ip_version", "IP version field does not match the EtherType"),
    ("parse_bad_ihl", "IPv4 header length below 5 words or past the frame"),
    ("parse_bad_ip_len", "IP total/payload length past the frame or below the header"),
    ("parse_trunc_ip6_ext", "IPv6 extension header cut short or chain too long"),
    ("parse_trunc_l4", "TCP/UDP/ICMP header cut short"),
    ("parse_bad_tcp_off", "TCP data offset below 5 words or past the segment"),
    ("parse_bad_udp_len", "UDP length below 8 or past the IP payload"),
    # flow tables
    ("no_match", "no flow matched (table miss, no controller)"),
    ("action_drop", "a flow's actions drop the packet (drop or no output)"),
    ("output_port_unknown", "output to a port the pipeline does not have"),
    ("ttl_expired", "dec_ttl on a TTL/hop limit <= 1 (OVS would send it to a controller)"),
    ("resubmit_depth", "resubmits nested over 64 deep (to the same or an earlier table) or over 4096 "
                       "resubmits and goto_tables for one packet (as OVS)"),
    ("vlan_refused", "normal: the input port does not carry the frame's VLAN"),
    ("tx_full", "no room left in the batch's tx list for a copy (raise the fanout)"),
    ("clone_full", "no clone row left for a modified copy (raise the fanout)"),
    ("commit_failed", "a rewrite could not be written into the packet (no headroom for a tag, or tags cut short)"),
    # tunnels
    ("tunnel_mtu", "encapsulated, the packet would exceed the underlay port's MTU"),
    ("tunnel_no_neighbor", "no neighbour (MAC address) known for the remote VTEP"),
    ("tunnel_no_remote", 'remote_ip = "flow" but the flow set no tun_dst'),
    ("tunnel_bad_header", "malformed VXLAN/Geneve header (flags, version, protocol, length or options)"),
    ("tunnel_bad_checksum", "outer IPv4 header or UDP checksum wrong on a tunnel packet"),
    ("tunnel_critical_option", "Geneve option with the critical bit that no [[geneve_option]] maps (RFC 8926)"),
    ("tunnel_no_room", "no clone row or headroom left to encapsulate a copy"),
    ("tunnel_ecn", "outer header marked CE (congestion) but the inner packet is not ECN-capable (RFC 6040)"),
    ("vtep_consumed", "ARP reply / neighbour advertisement to a VTEP address: learned by softdpu, not forwarded"),
    ("punted", "internal: a packet answered in place (ARP/ND) that was not sent; never expected"),
    # conntrack
    ("ct_full", "the connection table is full: ct(commit) of a new connection refused"),
    ("recirc_limit", "more than 6 ct(table=N) recirculations for one packet"),
    # the reject action (flows/reject.py)
    ("rejected", "a flow's reject action: dropped, and the sender told (TCP RST / ICMP unreachable)"),
    # IPsec ESP (stages/esp)
    ("esp_unknown_spi", "ESP to one of our SA addresses with an SPI no inbound SA has"),
    ("esp_replay", "ESP sequence number already received (anti-replay window, RFC 4303 3.4.3)"),
    ("esp_too_old", "ESP sequence number left of the anti-replay window"),
    ("esp_icv", "ESP integrity check (AEAD tag) failed: wrong key, or the packet was altered"),
    ("esp_bad_padding", "ESP padding bytes not 1, 2, 3, ... or pad length past the payload"),
    ("esp_bad_inner", "ESP next header not what the SA's mode carries (IPv4/IPv6 in tunnel mode)"),
    ("esp_bad_checksum", "outer IPv4 header checksum wrong on an ESP packet for one of our SAs"),
    ("esp_truncated", "ESP packet too short for its header, IV, trailer and ICV"),
    ("esp_seq_exhausted", "outbound SA used up its sequence numbers: it stops, never wraps (rekey)"),
    ("esp_mtu", "with the ESP overhead the packet would exceed the port's MTU"),
    ("esp_no_room", "no clone row, headroom or tailroom left to add the ESP headers"),
    ("esp_unprotected", "a plaintext packet that an inbound IPsec policy requires protected"),
    ("esp_policy_mismatch", "decrypted packet that the SA's inbound traffic selectors do not allow"),
    ("esp_unsupported", "under a transport-mode SA: an IP fragment or IPv6 extension headers"),
)

NAMES = tuple(name for name, _ in REASONS)
CODE = {name: code for code, name in enumerate(NAMES)}
N_REASONS = len(REASONS)

NONE = 0
FRAME_TOO_BIG = CODE["frame_too_big"]
SNAPLEN_TRUNCATED = CODE["snaplen_truncated"]
PARSE_TRUNC_L2 = CODE["parse_trunc_l2"]
PARSE_TRUNC_VLAN = CODE["parse_trunc_vlan"]
PARSE_TRUNC_ARP = CODE["parse_trunc_arp"]
PARSE_TRUNC_IP = CODE["parse_trunc_ip"]
PARSE_BAD_IP_VERSION = CODE["parse_bad_ip_version"]
PARSE_BAD_IHL = CODE["parse_bad_ihl"]
PARSE_BAD_IP_LEN = CODE["parse_bad_ip_len"]
PARSE_TRUNC_IP6_EXT = CODE["parse_trunc_ip6_ext"]
PARSE_TRUNC_L4 = CODE["parse_trunc_l4"]
PARSE_BAD_TCP_OFF = CODE["parse_bad_tcp_off"]
PARSE_BAD_UDP_LEN = CODE["parse_bad_udp_len"]
NO_MATCH = CODE["no_match"]
ACTION_DROP = CODE["action_drop"]
OUTPUT_PORT_UNKNOWN = CODE["output_port_unknown"]
TTL_EXPIRED = CODE["ttl_expired"]
RESUBMIT_DEPTH = CODE["resubmit_depth"]
VLAN_REFUSED = CODE["vlan_refused"]
TX_FULL = CODE["tx_full"]
CLONE_FULL = CODE["clone_full"]
COMMIT_FAILED = CODE["commit_failed"]
TUNNEL_MTU = CODE["tunnel_mtu"]
TUNNEL_NO_NEIGHBOR = CODE["tunnel_no_neighbor"]
TUNNEL_NO_REMOTE = CODE["tunnel_no_remote"]
TUNNEL_BAD_HEADER = CODE["tunnel_bad_header"]
TUNNEL_BAD_CHECKSUM = CODE["tunnel_bad_checksum"]
TUNNEL_CRITICAL_OPTION = CODE["tunnel_critical_option"]
TUNNEL_NO_ROOM = CODE["tunnel_no_room"]
TUNNEL_ECN = CODE["tunnel_ecn"]
VTEP_CONSUMED = CODE["vtep_consumed"]
PUNTED = CODE["punted"]
CT_FULL = CODE["ct_full"]
RECIRC_LIMIT = CODE["recirc_limit"]
REJECTED = CODE["rejected"]
ESP_UNKNOWN_SPI = CODE["esp_unknown_spi"]
ESP_REPLAY = CODE["esp_replay"]
ESP_TOO_OLD = CODE["esp_too_old"]
ESP_ICV = CODE["esp_icv"]
ESP_BAD_PADDING = CODE["esp_bad_padding"]
ESP_BAD_INNER = CODE["esp_bad_inner"]
ESP_BAD_CHECKSUM = CODE["esp_bad_checksum"]
ESP_TRUNCATED = CODE["esp_truncated"]
ESP_SEQ_EXHAUSTED = CODE["esp_seq_exhausted"]
ESP_MTU = CODE["esp_mtu"]
ESP_NO_ROOM = CODE["esp_no_room"]
ESP_UNPROTECTED = CODE["esp_unprotected"]
ESP_POLICY_MISMATCH = CODE["esp_policy_mismatch"]
ESP_UNSUPPORTED = CODE["esp_unsupported"]


def describe(code):
    """(name, description) of a drop code."""
    return REASONS[code]

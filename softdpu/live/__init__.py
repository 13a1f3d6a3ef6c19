"""Live mode: softdpu on real interfaces (afpacket, tap ports), its workers and control socket."""

"""`softdpu bench`: what a pipeline costs per packet, in memory, on one core.

  traffic.py   the packets: the pipeline's own captures (or --pcap), resized to
               --size / IMIX and replicated over --flows flows
  feed.py      Feeder: refills a Batch from frames in memory, as the pcap reader does
  measure.py   timed runs of Dpu.process and of each of Dpu.steps; medians
  tax.py       the infrastructure tax: host cores for a load (arithmetic only)
  machine.py   CPU model, cores, frequency (for cycles per packet)
  report.py    the command: text and JSON output
"""

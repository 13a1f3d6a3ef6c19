"""Overlay tunnels: VXLAN (RFC 7348) and Geneve (RFC 8926) ports, as Open vSwitch's.

table.py builds the arrays the kernels read from the pipeline file; decap.py
takes tunnel packets off their underlay port before the flow tables; encap.py
wraps the copies the flow tables send to a tunnel port and sends them out of
its underlay; stage.py ties them to a Dpu.
"""

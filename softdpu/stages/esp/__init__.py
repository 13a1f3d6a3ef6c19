"""IPsec ESP: static SAs (config_esp.py), decrypted after parse, encrypted after encapsulation."""

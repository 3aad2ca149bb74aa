"""`decbench quantize`: quantized copies of a model (schemes.py), written to and loaded from a
folder (load.py), and a quality and speed report against the original (report.py)."""

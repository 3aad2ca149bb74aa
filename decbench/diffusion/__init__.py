"""Masked-diffusion language models: the denoiser interface (runner.py), the shared canvas and
decoding loop (canvas.py), our small dLLM adapted from the default model (model.py, adapt.py).
The dllm-* decoders live in decbench/decoders/, one file each."""

"""The decbench CLI: commands only wire options to library calls and hand results to Output."""

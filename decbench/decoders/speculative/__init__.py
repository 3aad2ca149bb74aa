"""Speculative decoding: proposer + acceptance rule + engine."""

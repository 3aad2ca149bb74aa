"""Metrics computed from traces and token ids, never from re-tokenised text."""

"""Thin absl binaries, one per pipeline stage, and the experiment configurations."""

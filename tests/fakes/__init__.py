"""Fakes at the network boundary: local servers the real clients talk to."""

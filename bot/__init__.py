"""Hotwash: grounded, cited incident triage and postmortem drafts, approved by humans."""

__version__ = "0.1.0"

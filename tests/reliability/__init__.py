"""Reliability and security tests: faults, chaos, hostile input (docs/reliability.md)."""

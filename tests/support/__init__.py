"""Test helpers that are real servers, not mocks (e.g. a CloudEvents HTTP receiver)."""

"""The one exception type the simulator raises for gNMI-visible failures."""

from __future__ import annotations

import grpc


class GnmiError(Exception):
    """A failure with the canonical gRPC status code a real target would return."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class UnknownMember(GnmiError):
    """A member of a Set payload the schema does not know (a bad value, not a bad path)."""

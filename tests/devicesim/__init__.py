"""Tests of the gNMI device simulator (devicesim)."""

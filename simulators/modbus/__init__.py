"""Modbus TCP PLC simulator: ``python -m simulators.modbus`` (see README.md in this package)."""

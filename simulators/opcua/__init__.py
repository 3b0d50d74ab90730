"""OPC UA PLC simulator: ``python -m simulators.opcua`` (see README.md in this package)."""

"""Siemens S7 PLC simulator on python-snap7's server: ``python -m simulators.s7``."""

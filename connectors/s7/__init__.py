"""Siemens S7 PLCs (S7comm over ISO-on-TCP), through the asyncio client of python-snap7."""

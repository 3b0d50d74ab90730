"""Modbus TCP / RTU-over-TCP / serial RTU connector with automatic request coalescing."""

"""Sinks: where normalized readings go (MQTT broker, time-series database, local store).

A sink delivers a write or raises; it never buffers or retries, the runtime does that.
"""

"""Many gateways managed from one place over their MQTT broker (cluster)."""

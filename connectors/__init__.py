"""Protocol connectors: each turns one device's protocol into batches of readings."""

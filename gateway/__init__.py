"""Industrial device onboarding gateway: devices in, normalized readings out."""

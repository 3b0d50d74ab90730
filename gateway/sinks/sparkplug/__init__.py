"""Sparkplug B 3.0 edge node sink (Eclipse Sparkplug, ISO/IEC 20237): the gateway is one edge
node and every gateway device is a Sparkplug device."""

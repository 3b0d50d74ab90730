"""One set of routes per resource."""

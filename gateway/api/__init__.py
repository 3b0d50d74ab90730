"""The control plane over HTTP: FastAPI, versioned under /api/v1, with the page at /."""

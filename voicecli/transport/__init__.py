"""Connections, retries, reconnects and timeouts around the wire layer."""

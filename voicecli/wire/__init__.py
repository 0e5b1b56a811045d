"""Sans-I/O protocol code: build request bodies, decode streams into neutral events."""

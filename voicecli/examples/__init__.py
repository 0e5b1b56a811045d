"""Example python tools used by the built-in `tools-demo` profile (see profiles/tools-demo.toml)."""

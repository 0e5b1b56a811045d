"""The voice session layer: the Realtime session (`session`) and what was heard (`turns`)."""

"""Terminal rendering and the interactive front ends."""

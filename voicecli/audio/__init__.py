"""Microphone, speaker, devices and WAV files."""

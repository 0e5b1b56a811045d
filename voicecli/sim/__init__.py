"""Loopback simulator of the OpenAI APIs voicecli speaks (Responses, Chat Completions, Realtime, audio)."""

"""voicecli: talk to OpenAI-style models by voice and by text from the terminal."""

__version__ = "0.1.0"

"""The voice session layer: a Realtime session (`session`) or a cascade (`cascade`), and what was heard (`turns`)."""


def session_class(engine: str):
    """The voice session of a talk engine: "realtime" (RealtimeSession) or "cascade" (CascadeSession)."""
    if engine == "cascade":
        from voicecli.voice.cascade import CascadeSession

        return CascadeSession
    from voicecli.voice.session import RealtimeSession

    return RealtimeSession

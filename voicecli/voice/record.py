"""What a `talk` session keeps of itself: each finished utterance on screen, in the conversation
(and so in its log: `infer -c` continues it) and in the `--transcript` file; the tokens and cost of
its answers, for the closing line."""

from __future__ import annotations

import time

from voicecli.events import Usage
from voicecli.transcript import Entry


class TalkRecord:
    def __init__(self, profile, *, model: str, cascade: bool, view, transcript):
        self.profile, self.model, self.cascade = profile, model, cascade
        self.view, self.transcript = view, transcript
        self.session = None  # set once it has started: what is said joins its conversation
        self.spent, self.answers = Usage(), 0

    def said(self, role: str, text: str, *, start=None, interrupted=False, usage=None, meta=None,
             item_id=None) -> None:
        """One finished utterance: on screen, in the transcript file, in the conversation (and its log)."""
        if role == "user" and not text:
            self.view.partial("user", "")
            return
        self.view.final(role, text, interrupted=interrupted)
        self.session.remember(role, text, interrupted=interrupted, item_id=item_id)
        self.write(role, text, start=start or time.time(), interrupted=interrupted, usage=usage, meta=meta)

    def write(self, role: str, text: str, *, start: float, interrupted=False, usage=None, meta=None) -> None:
        if self.transcript is not None:
            self.transcript.write(Entry(role, text, start, time.time(), interrupted, usage, meta or {}))

    def finalise(self, turns, force: bool = False) -> None:
        """Write each answer once its response is over and its audio played (or was cut)."""
        for heard in turns.finished(force):
            item = heard.item
            meta = {"played_ms": item.played_ms} if heard.interrupted else {}
            if item.usage is not None:  # the cost of the response this answer was part of
                meta["cost_usd"] = self.cost(item.usage)
            self.said("assistant", heard.text, start=item.start, interrupted=heard.interrupted, usage=item.usage,
                      meta=meta, item_id=item.item_id)

    def count(self, usage: Usage) -> None:
        self.spent, self.answers = self.spent + usage, self.answers + 1

    def cost(self, usage: Usage) -> float | None:
        """Dollars for `usage` on the model that answered (None: unknown price). A cascade's speech-to-text
        and text-to-speech are not priced: their servers report no usage we could trust for it."""
        from voicecli import pricing

        price = self.profile.model.price if self.cascade else None
        return pricing.cost_usd(self.model, usage, price)

    def closing_line(self) -> str | None:
        """The session's answers, tokens and cost (discarded preemptive answers included: billed, never
        heard); None when nothing was answered."""
        if not self.answers:
            return None
        from voicecli.pricing import format_usd

        wasted = getattr(self.session, "wasted_usage", None)
        usage = self.spent + wasted if wasted is not None else self.spent
        speech = " (text model; speech not priced)" if self.cascade else ""
        audio = f", {usage.audio_input_tokens} audio" if usage.audio_input_tokens else ""
        n = self.answers
        return (f"{n} answer{'s' * (n != 1)} · {usage.input_tokens} tokens in ({usage.cached_tokens} "
                f"cached{audio}) · {usage.output_tokens} out · {format_usd(self.cost(usage))}{speech}"
                + self._discarded())

    def _discarded(self) -> str:
        """A cascade's preemptive answers thrown away (the user went on): how many, their requests; what
        the server reported for them is in the closing line's tokens and cost."""
        n = getattr(self.session, "discarded", 0)
        if not n:
            return ""
        asked = ", ".join(f"{count} {stage}" for stage, count in self.session.wasted.items() if count)
        return (f" · {n} preemptive answer{'s' * (n != 1)} discarded ({asked} requests; the tokens the server "
                f"reported for them are counted above)")

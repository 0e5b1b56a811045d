"""The `voicecli` command line: parse flags, load a profile, hand over to a front end.

Startup is a feature: this module imports only Typer and the standard library. Every command
imports what it needs (transports, audio, numpy, prompt_toolkit) inside its own function.

No `from __future__ import annotations` here: Typer would then evaluate each option's annotation
string several times while building the command being run (~5 ms of every start); evaluated once
as the functions are defined, they cost ~1.5 ms.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer

from voicecli import __version__
from voicecli.errors import EXIT_CODE_HELP, ExitCode, VoicecliError

EXAMPLES = """\
Examples:

\b
  voicecli infer -p offline "hello"              # try it with the built-in simulator: no key, no network
  cat notes.md | voicecli infer "summarise this"  # stdin joins the prompt; stdout carries only the answer
  voicecli chat -m gpt-5.5 -s "Be brief."         # interactive text chat
  voicecli talk --vad server                      # talk to the model; talk over it to interrupt
  voicecli transcribe >> notes.txt                # dictate: a line per utterance; Ctrl-C ends
  voicecli infer "tell me a joke" | voicecli say  # speak the answer while it streams
  voicecli profiles list                          # profiles live in ~/.config/voicecli/profiles
  voicecli batch prompts.jsonl -j 32              # many prompts, resumable; answers in prompts.out.jsonl
  voicecli logs search "docker"                   # find an earlier conversation; `logs show ID` shows it
  voicecli sim --port 8000                        # an OpenAI-compatible simulator for offline work
"""

app = typer.Typer(
    name="voicecli",
    help="Talk to OpenAI-style models by voice and by text.\n\n" + EXAMPLES,
    epilog=EXIT_CODE_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
profiles_app = typer.Typer(help="List, show, create, edit and validate profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
tools_app = typer.Typer(help="List a profile's tools and run one by hand.", no_args_is_help=True)
app.add_typer(tools_app, name="tools")
logs_app = typer.Typer(help="List, show and search logged conversations (-n, --since, --json).")
app.add_typer(logs_app, name="logs")
keys_app = typer.Typer(help="Store API keys (used when the variable a profile names is unset).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


class _State:
    debug = False


def _version(value: bool) -> None:
    if value:
        print(f"voicecli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


# ---- shell completion of values (voicecli/completion.py, imported on a Tab press only) ----------


def _completer(kind: str):
    def complete(ctx: typer.Context, incomplete: str):
        from voicecli.completion import complete

        return complete(kind, ctx.params, incomplete)

    return complete


# ---- flags shared by chat, talk and infer --------------------------------------------------

ProfileOpt = Annotated[Optional[str], typer.Option(
    "-p", "--profile", metavar="NAME|PATH", autocompletion=_completer("profile"),
    help="Profile name or TOML file (default: $VOICECLI_PROFILE, else 'default').")]
ModelOpt = Annotated[Optional[str], typer.Option("-m", "--model", metavar="MODEL", autocompletion=_completer("model"),
                                                 help="Model name (env VOICECLI_MODEL).")]
SystemOpt = Annotated[Optional[str], typer.Option("-s", "--system", metavar="TEXT", help="System instructions.")]
TransportOpt = Annotated[Optional[str], typer.Option(
    "-t", "--transport", metavar="ws|sse|chat", autocompletion=_completer("transport"),
    help="ws: Responses over WebSocket · sse: Responses over HTTP · chat: Chat Completions (env VOICECLI_TRANSPORT).")]
BaseUrlOpt = Annotated[Optional[str], typer.Option(
    "--base-url", metavar="URL", help="API root, e.g. http://localhost:11434/v1 (env OPENAI_BASE_URL).")]
OptionOpt = Annotated[Optional[list[str]], typer.Option(
    "-o", "--option", metavar="KEY=VALUE",
    help="Model setting, repeatable: -o temperature=0.2 -o reasoning_effort=low -o voice.speed=1.2.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and protocol details on stderr.")]
RequireMcpOpt = Annotated[bool, typer.Option(
    "--require-mcp", help="Exit 3 if an [[mcp]] server of the profile cannot start (default: go on without it).")]


@dataclass
class Selection:
    """What the common flags chose; turned into a Profile by `load_profile`."""

    profile: str | None = None
    model: str | None = None
    system: str | None = None
    transport: str | None = None
    base_url: str | None = None
    options: list[str] = field(default_factory=list)

    def load_profile(self, resume: str | None = None, *, text: bool = True):
        """`resume`: the conversation -c ("" = the latest) or --cid continues. Unless flags say
        otherwise it continues with the profile, base URL and (`text`) model and transport it ran with."""
        from voicecli import profiles

        if self.transport and self.transport not in ("ws", "sse", "chat"):
            raise VoicecliError(f"--transport must be ws, sse or chat; got '{self.transport}'",
                                exit_code=ExitCode.USAGE)
        overrides = profiles.parse_options(self.options)
        for key, value in (("model.name", self.model), ("model.instructions", self.system),
                           ("connection.transport", self.transport), ("connection.base_url", self.base_url)):
            if value is not None:
                overrides[key] = value
        name = self.profile
        if resume is not None:
            name = self._resumed(resume, overrides, text)
        return profiles.load(name, overrides=overrides)

    def _resumed(self, cid: str, overrides: dict, text: bool) -> str | None:
        from voicecli import convlog, profiles

        was = convlog.ran_with(cid or None)
        name = self.profile
        if name is None and was.get("profile"):
            try:
                profiles.find(was["profile"])
                name = was["profile"]
            except VoicecliError:  # deleted or renamed since: the usual default, said once
                print(f"voicecli: warning: the conversation's profile '{was['profile']}' is gone; "
                      "using the default one", file=sys.stderr)
        if name is None or name != was.get("profile"):
            return name  # another profile was asked for: its own model and base URL
        keys = {"connection.base_url": "base_url"}
        if text:
            keys.update({"model.name": "model", "connection.transport": "transport"})
        for key, field_ in keys.items():
            value = was.get(field_)
            if value and key not in overrides:
                overrides[key] = value
        return name


# ---- text and voice -------------------------------------------------------------------------


@app.command(epilog=EXIT_CODE_HELP)
def infer(
    prompt: Annotated[Optional[list[str]], typer.Argument(metavar="PROMPT...", help="The prompt; stdin, if piped, comes first.")] = None,
    profile: ProfileOpt = None, model: ModelOpt = None, system: SystemOpt = None,
    transport: TransportOpt = None, base_url: BaseUrlOpt = None, option: OptionOpt = None,
    file: Annotated[Optional[list[str]], typer.Option(
        "-f", "--file", metavar="PATH|URL", help="Attach a text file or an http(s) web page or file (repeatable).")] = None,
    image: Annotated[Optional[list[str]], typer.Option("--image", metavar="PATH|URL", help="Attach an image.")] = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Print the answer once, at the end.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Plain text even on a terminal (no markdown).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object with text, usage, timings.")] = False,
    events: Annotated[bool, typer.Option("--events", help="Stream neutral events as JSON Lines.")] = False,
    usage: Annotated[bool, typer.Option("-u", "--usage", help="Token and latency summary on stderr.")] = False,
    continue_: Annotated[bool, typer.Option("-c", "--continue", help="Continue the latest conversation.")] = False,
    cid: Annotated[Optional[str], typer.Option("--cid", metavar="ID", help="Continue conversation ID.")] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not append to the conversation log.")] = False,
    allow_tool: Annotated[Optional[list[str]], typer.Option("--allow-tool", metavar="NAME",
                                                             help="Run this 'ask' tool without asking.")] = None,
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Run every 'ask' tool without asking.")] = False,
    schema: Annotated[Optional[str], typer.Option(
        "--schema", metavar="JSON|FILE|FIELDS",
        help="Answer as JSON matching this schema: inline JSON, a .json file, or 'name, age int, bio: one sentence'.")] = None,
    extract: Annotated[bool, typer.Option("-x", "--extract", help="Print only the first fenced code block's contents.")] = False,
    extract_last: Annotated[bool, typer.Option("--extract-last", help="Print only the last fenced code block's contents.")] = False,
    speak: Annotated[bool, typer.Option("--speak", help="Also say the answer on the speaker as it streams "
                                                        "(voice.speech_model, voice.voice).")] = False,
    require_mcp: RequireMcpOpt = False,
    debug: DebugOpt = False,
) -> None:
    """One-shot answer for scripts and pipes: the answer on stdout, everything else on stderr."""
    _State.debug = debug
    if json_out and events:  # two different stdout formats: a script could parse neither
        raise VoicecliError("--json and --events cannot be used together", exit_code=ExitCode.USAGE,
                            hint="--json prints one object at the end; --events one JSON line per event")
    clash = [flag for flag, given in (("--json", json_out), ("--events", events), ("--schema", schema)) if given]
    if (extract or extract_last) and clash:
        raise VoicecliError(f"--extract cannot be used with {clash[0]}", exit_code=ExitCode.USAGE,
                            hint="--extract prints code; --json, --events and --schema print JSON")
    resume = (cid or "") if continue_ or cid else None
    prof = Selection(profile, model, system, transport, base_url, option or []).load_profile(resume)
    from voicecli.infer import InferOptions, run_infer

    opts = InferOptions(prompt=prompt or [], files=file or [], images=image or [], no_stream=no_stream,
                        json_out=json_out, events=events, usage=usage, raw=raw, continue_=continue_, cid=cid,
                        no_log=no_log, allow_tools=allow_tool or [], yes=yes, require_mcp=require_mcp, debug=debug,
                        schema=schema, extract="last" if extract_last else "first" if extract else None,
                        speak=speak)
    raise typer.Exit(run_infer(prof, opts))


@app.command(epilog=EXIT_CODE_HELP)
def batch(
    input_: Annotated[str, typer.Argument(metavar="INPUT", help="JSON Lines ({\"id\", \"prompt\"} …) or one prompt a line; "
                                          "- reads stdin. Or: `status [BATCH_ID]`, `cancel BATCH_ID`.")],
    batch_id: Annotated[Optional[str], typer.Argument(metavar="[BATCH_ID]", hidden=True)] = None,
    out: Annotated[Optional[str], typer.Option("-O", "--out", metavar="OUT.jsonl",
                                               help="Answers, one JSON line per input (default INPUT.out.jsonl; - for stdout).")] = None,
    jobs: Annotated[int, typer.Option("-j", "--jobs", metavar="N", help="Requests in flight (local mode).")] = 8,
    profile: ProfileOpt = None, model: ModelOpt = None, system: SystemOpt = None,
    transport: TransportOpt = None, base_url: BaseUrlOpt = None, option: OptionOpt = None,
    schema: Annotated[Optional[str], typer.Option(
        "--schema", metavar="JSON|FILE|FIELDS", help="Answers as JSON matching this schema (as infer's --schema).")] = None,
    api: Annotated[str, typer.Option("--api", metavar="local|batch",
                                     help="local: concurrent requests from here; batch: the provider's Batch API (half price, within 24 h).")] = "local",
    json_out: Annotated[bool, typer.Option("--json", help="A summary object on stdout at the end.")] = False,
    log: Annotated[bool, typer.Option("--log", help="Log each item to the conversation log (off by default).")] = False,
    debug: DebugOpt = False,
) -> None:
    """Many prompts from a file: concurrently, or on the Batch API; resumable, one answer line per prompt."""
    _State.debug = debug
    prof = Selection(profile, model, system, transport, base_url, option or []).load_profile()
    if input_ in ("status", "cancel") and not Path(input_).is_file():
        from voicecli.batch_api import batch_cancel, batch_status

        if input_ == "cancel" and not batch_id:
            raise VoicecliError("batch cancel needs a BATCH_ID", exit_code=ExitCode.USAGE,
                                hint="`voicecli batch status` lists the recent batches")
        raise typer.Exit((batch_status if input_ == "status" else batch_cancel)(prof, batch_id, json_out, debug))
    if batch_id is not None:
        raise VoicecliError(f"unexpected argument '{batch_id}'", exit_code=ExitCode.USAGE,
                            hint="one INPUT file; the output file is --out")
    if api not in ("local", "batch"):
        raise VoicecliError(f"--api must be local or batch; got '{api}'", exit_code=ExitCode.USAGE)
    from voicecli.batch import BatchOptions, run_batch

    opts = BatchOptions(input=input_, out=out, jobs=jobs, api=api, json_out=json_out, log=log, schema=schema,
                        debug=debug)
    if api == "batch":
        from voicecli.batch_api import run_api

        raise typer.Exit(run_api(prof, opts))
    raise typer.Exit(run_batch(prof, opts))


@app.command(epilog=EXIT_CODE_HELP)
def chat(
    profile: ProfileOpt = None, model: ModelOpt = None, system: SystemOpt = None,
    transport: TransportOpt = None, base_url: BaseUrlOpt = None, option: OptionOpt = None,
    continue_: Annotated[bool, typer.Option("-c", "--continue", help="Resume the latest conversation.")] = False,
    cid: Annotated[Optional[str], typer.Option("--cid", metavar="ID", help="Resume conversation ID.")] = None,
    transcript: Annotated[Optional[Path], typer.Option("--transcript", metavar="PATH", help="Append every exchange to this .md or .jsonl file.")] = None,
    vi: Annotated[bool, typer.Option("--vi", help="vi key bindings.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Plain text instead of rendered markdown.")] = False,
    require_mcp: RequireMcpOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Interactive text chat with streaming, history and slash commands (/help)."""
    _State.debug = debug
    resume = (cid or "") if continue_ or cid else None
    prof = Selection(profile, model, system, transport, base_url, option or []).load_profile(resume)
    from voicecli.ui.repl import ChatOptions, run_chat

    opts = ChatOptions(continue_=continue_, cid=cid, transcript=transcript, vi=vi, raw=raw, debug=debug,
                       require_mcp=require_mcp)
    raise typer.Exit(run_chat(prof, opts))


@app.command(epilog=EXIT_CODE_HELP)
def talk(
    profile: ProfileOpt = None, model: ModelOpt = None, system: SystemOpt = None,
    transport: TransportOpt = None, base_url: BaseUrlOpt = None, option: OptionOpt = None,
    engine: Annotated[Optional[str], typer.Option(
        "--engine", metavar="realtime|cascade", autocompletion=_completer("engine"),
        help="Realtime API, or speech-to-text → text model (-t) → text-to-speech (default: voice.engine; "
             "auto = cascade with -t chat).")] = None,
    voice: Annotated[Optional[str], typer.Option("--voice", metavar="NAME", help="Voice, e.g. marin, cedar, alloy.")] = None,
    vad: Annotated[Optional[str], typer.Option("--vad", metavar="server|semantic|off", autocompletion=_completer("vad"),
                                               help="Turn detection; off = push-to-talk (Space).")] = None,
    half_duplex: Annotated[Optional[bool], typer.Option(
        "--half-duplex/--full-duplex",
        help="Mute the mic while the assistant speaks (default: full-duplex with echo cancellation).")] = None,
    aec: Annotated[Optional[bool], typer.Option(
        "--aec/--no-aec", help="Echo cancellation on the mic (default: voice.echo_cancellation, on).")] = None,
    input_device: Annotated[Optional[str], typer.Option("--input-device", metavar="INDEX|NAME", autocompletion=_completer("source"),
                                                        help="Microphone (see `voicecli devices`).")] = None,
    output_device: Annotated[Optional[str], typer.Option("--output-device", metavar="INDEX|NAME", autocompletion=_completer("sink"), help="Speaker.")] = None,
    input_wav: Annotated[Optional[Path], typer.Option("--input", metavar="FILE.wav", help="Stream a WAV file instead of the microphone.")] = None,
    output_wav: Annotated[Optional[Path], typer.Option("--output", metavar="FILE.wav", help="Record the assistant to a WAV file.")] = None,
    no_mic: Annotated[bool, typer.Option("--no-mic", help="No microphone: type your turns (keyboard or stdin); answers are spoken.")] = False,
    transcript: Annotated[Optional[Path], typer.Option("--transcript", metavar="PATH", help="Append the conversation to this .jsonl or .md file.")] = None,
    continue_: Annotated[bool, typer.Option("-c", "--continue", help="Continue the latest conversation (text or voice).")] = False,
    cid: Annotated[Optional[str], typer.Option("--cid", metavar="ID", help="Continue conversation ID.")] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not append to the conversation log.")] = False,
    require_mcp: RequireMcpOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Live voice conversation (Realtime API or a speech-to-text → text → speech cascade), with barge-in."""
    _State.debug = debug
    if vad is not None and vad not in ("server", "semantic", "off"):
        raise VoicecliError(f"--vad must be server, semantic or off; got '{vad}'", exit_code=ExitCode.USAGE)
    if engine is not None and engine not in ("realtime", "cascade", "auto"):
        raise VoicecliError(f"--engine must be realtime or cascade; got '{engine}'", exit_code=ExitCode.USAGE)
    sel = Selection(profile, None, system, transport, base_url, option or [])
    # continuing: the conversation's profile and base URL (its text model is no voice model)
    prof = sel.load_profile((cid or "") if continue_ or cid else None, text=False)
    from voicecli.talk import run_talk
    from voicecli.voice.options import TalkOptions

    engine = prof.talk_engine(engine)
    if engine == "cascade" and vad in ("server", "semantic"):
        print(f"voicecli: note: --vad {vad} is the Realtime API's; the cascade detects speech itself "
              "(voice.vad_threshold, voice.vad_silence_duration_ms)", file=sys.stderr)
    if model:  # the Realtime model, or the cascade's text model
        from voicecli import profiles

        profiles.apply_setting(prof, "voice.model" if engine == "realtime" else "model.name", model)

    opts = TalkOptions(vad=vad, half_duplex=half_duplex, aec=aec, input_device=input_device, output_device=output_device,
                       input_wav=input_wav, output_wav=output_wav, transcript=transcript, voice=voice,
                       continue_=continue_, cid=cid, no_log=no_log, debug=debug, require_mcp=require_mcp,
                       engine=engine, no_mic=no_mic)
    raise typer.Exit(run_talk(prof, opts))


VoiceOpt = Annotated[Optional[str], typer.Option("--voice", metavar="NAME", help="Voice, e.g. marin, cedar, alloy.")]


@app.command(epilog=EXIT_CODE_HELP)
def say(
    text: Annotated[Optional[list[str]], typer.Argument(metavar="[TEXT...|-]", help="What to say; stdin when none or -.")] = None,
    profile: ProfileOpt = None, base_url: BaseUrlOpt = None, option: OptionOpt = None,
    model: Annotated[Optional[str], typer.Option("-m", "--model", metavar="MODEL",
                                                 help="Text-to-speech model (default: voice.speech_model).")] = None,
    voice: VoiceOpt = None,
    instructions: Annotated[Optional[str], typer.Option("--instructions", metavar="TEXT",
                                                        help="How to speak: tone, pace (gpt-4o-mini-tts).")] = None,
    output: Annotated[Optional[str], typer.Option("-O", "--output", metavar="FILE.wav|-",
                                                  help="Write a 24 kHz WAV instead of playing it (- = stdout).")] = None,
    output_device: Annotated[Optional[str], typer.Option("--output-device", metavar="INDEX|NAME",
                                                         autocompletion=_completer("sink"), help="Speaker.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Speak text (arguments, or stdin as it streams) on the speaker, or write it as a WAV (-O)."""
    _State.debug = debug
    prof = Selection(profile, base_url=base_url, options=option or []).load_profile()
    if model:
        from voicecli import profiles

        profiles.apply_setting(prof, "voice.speech_model", model)
    from voicecli.say import SayOptions, run_say

    raise typer.Exit(run_say(prof, SayOptions(text=text or [], output=output, output_device=output_device,
                                              voice=voice, instructions=instructions, debug=debug)))


@app.command(epilog=EXIT_CODE_HELP)
def transcribe(
    source: Annotated[Optional[str], typer.Argument(metavar="[FILE.wav|-]",
                                                    help="A WAV file, or - for a WAV on stdin; none: dictate from the microphone.")] = None,
    profile: ProfileOpt = None, base_url: BaseUrlOpt = None, option: OptionOpt = None,
    model: Annotated[Optional[str], typer.Option("-m", "--model", metavar="MODEL",
                                                 help="Speech-to-text model (default: voice.transcription_model).")] = None,
    format_: Annotated[str, typer.Option("--format", "-F", metavar="text|json|srt|vtt",
                                         help="text: lines · json: segments with start/end seconds · srt/vtt: subtitles.")] = "text",
    language: Annotated[Optional[str], typer.Option("--language", metavar="CODE", help="The spoken language, e.g. en, de.")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", metavar="TEXT", help="Words and spellings to expect.")] = None,
    engine: Annotated[Optional[str], typer.Option(
        "--engine", metavar="http|realtime",
        help="Dictation: local VAD + /audio/transcriptions (http, default), or a Realtime transcription session.")] = None,
    partial: Annotated[bool, typer.Option("--partial", help="Dictation on a terminal: show the words in progress on stderr.")] = False,
    log: Annotated[bool, typer.Option("--log", help="Append the transcript to the conversation log as user turns "
                                                    "(then `infer -c` can use it).")] = False,
    input_device: Annotated[Optional[str], typer.Option("--input-device", metavar="INDEX|NAME",
                                                        autocompletion=_completer("source"), help="Microphone.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Speech to text: dictate from the microphone (a line per utterance), or transcribe a WAV file."""
    _State.debug = debug
    if engine is not None and engine not in ("http", "realtime"):
        raise VoicecliError(f"--engine must be http or realtime; got '{engine}'", exit_code=ExitCode.USAGE)
    prof = Selection(profile, base_url=base_url, options=option or []).load_profile()
    if model:
        from voicecli import profiles

        profiles.apply_setting(prof, "voice.transcription_model", model)
    from voicecli.transcribe import TranscribeOptions, run_transcribe

    live = None
    if source is None:
        from voicecli.dictation import Dictation as live
    raise typer.Exit(run_transcribe(prof, TranscribeOptions(
        source=source, format=format_, language=language, prompt=prompt, engine=engine, partial=partial, log=log,
        input_device=input_device, debug=debug), live=live))


@app.command()
def devices(json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
            debug: DebugOpt = False) -> None:
    """List audio input and output devices (index, name, channels, default rate)."""
    _State.debug = debug
    from voicecli.audio.devices import print_devices

    print_devices(json_out)


@app.command(epilog=EXIT_CODE_HELP)
def models(profile: ProfileOpt = None, base_url: BaseUrlOpt = None, option: OptionOpt = None,
           json_out: Annotated[bool, typer.Option("--json", help="The server's model objects as JSON.")] = False,
           debug: DebugOpt = False) -> None:
    """The models the profile's server offers (GET /models): a table on a terminal, ids when piped."""
    _State.debug = debug
    prof = Selection(profile, base_url=base_url, options=option or []).load_profile()
    from voicecli.models import list_models

    raise typer.Exit(list_models(prof, json_out, debug))


@app.command()
def sim(
    host: Annotated[str, typer.Option("--host", metavar="ADDR", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="N", help="Port (0 = any free port).")] = 0,
    api_key: Annotated[Optional[str], typer.Option("--api-key", metavar="KEY", help="Require this bearer key (else any key).")] = None,
    script: Annotated[Optional[Path], typer.Option("--script", metavar="PATH", help="JSON/TOML script of replies and faults.")] = None,
    latency: Annotated[float, typer.Option("--latency", metavar="S", help="Seconds before the first byte.")] = 0.0,
    delta_delay: Annotated[float, typer.Option("--delta-delay", metavar="S", help="Seconds between streamed deltas.")] = 0.0,
    batch_delay: Annotated[float, typer.Option("--batch-delay", metavar="S", help="Seconds a Batch API batch takes to complete.")] = 0.0,
    think: Annotated[bool, typer.Option("--think", help="Chat streams: reasoning as a leading <think> block in the content.")] = False,
    phrase: Annotated[Optional[list[str]], typer.Option("--phrase", metavar="TEXT", help="Transcribe its own speech of TEXT exactly from the start (repeatable).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Run the loopback simulator of the OpenAI APIs; point any OpenAI client at the printed URL."""
    _State.debug = debug
    from voicecli.sim.config import SimConfig
    from voicecli.sim.script import Script, ScriptError
    from voicecli.sim.server import serve_forever

    if script is not None:  # check it now: a bad script is one line, not a failure on the first request
        if not script.is_file():
            raise VoicecliError(f"--script {script}: no such file", exit_code=ExitCode.USAGE)
        try:
            Script.load(script)
        except ScriptError as exc:
            raise VoicecliError(str(exc), exit_code=ExitCode.CONFIG,
                                hint="the format is described in voicecli/sim/script.py") from None
    config = SimConfig(host=host, port=port, api_key=api_key, script=script, latency=latency,
                       delta_delay=delta_delay, batch_delay=batch_delay, think=think, phrases=tuple(phrase or ()))
    def ready(url: str) -> None:
        print(url, flush=True)  # stdout is data: just the base URL
        print(f"voicecli sim: listening; point any OpenAI client at it, e.g. OPENAI_BASE_URL={url} "
              "(Ctrl-C stops)", file=sys.stderr, flush=True)

    try:
        serve_forever(config, on_ready=ready)
    except OSError as exc:  # only binding raises here: the port is taken, the address is not ours
        import os

        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise VoicecliError(f"cannot listen on {host}:{port}: {reason}", exit_code=ExitCode.USAGE,
                            hint="pick another --port, or --port 0 for any free one") from None


# ---- keys ----------------------------------------------------------------------------------

KeyNameArg = Annotated[str, typer.Argument(metavar="NAME", help="The variable's name, e.g. OPENAI_API_KEY.")]


@keys_app.command("set")
def keys_set(name: KeyNameArg) -> None:
    """Store a key: typed without echo on a terminal, or read from stdin (`pass show x | voicecli keys set NAME`)."""
    from voicecli import keys

    keys.check_name(name)
    keys.save(name, keys.read_key_from_user(name))
    print(f"stored {name} in {keys.keys_path()}", file=sys.stderr)


@keys_app.command("list")
def keys_list(json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """The names of the stored keys (never the keys)."""
    import json
    import os

    from voicecli import keys

    names = sorted(keys.load())
    if json_out:
        print(json.dumps([{"name": n, "shadowed_by_env": bool(os.environ.get(n))} for n in names]))
        return
    for n in names:
        print(n + ("  (the environment's value is used: it is set)" if os.environ.get(n) else ""))


@keys_app.command("path")
def keys_path() -> None:
    """Where the keys are stored."""
    from voicecli import keys

    print(keys.keys_path())


@keys_app.command("rm")
def keys_rm(names: Annotated[list[str], typer.Argument(metavar="NAME...")]) -> None:
    """Forget stored keys."""
    from voicecli import keys

    missing = [n for n in names if not keys.remove(keys.check_name(n))]
    if missing:
        raise VoicecliError(f"no stored key named {', '.join(missing)}", exit_code=ExitCode.USAGE,
                            hint="voicecli keys list shows the names")


# ---- profiles -------------------------------------------------------------------------------


@profiles_app.command("list")
def profiles_list(json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """Table of profiles: name, source, model, transport, description."""
    from voicecli.profiles_cli import list_profiles

    list_profiles(json_out)


ProfileArg = Annotated[str, typer.Argument(metavar="NAME|PATH", autocompletion=_completer("profile"))]


@profiles_app.command("show")
def profiles_show(name: ProfileArg,
                  json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """Resolved settings of a profile (after extends and environment), secrets redacted."""
    from voicecli.profiles_cli import show_profile

    show_profile(name, json_out)


@profiles_app.command("path")
def profiles_path(name: Annotated[Optional[str], typer.Argument(metavar="[NAME]", autocompletion=_completer("profile"))] = None) -> None:
    """Where user profiles live, or the file behind NAME."""
    from voicecli.profiles_cli import profile_path

    profile_path(name)


@profiles_app.command("new")
def profiles_new(
    name: str,
    base: Annotated[str, typer.Option("--from", metavar="BASE", help="Profile to extend.",
                                      autocompletion=_completer("profile"))] = "default",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing profile.")] = False,
) -> None:
    """Create a user profile that extends another."""
    from voicecli.profiles_cli import new_profile

    new_profile(name, base, force)


@profiles_app.command("set")
def profiles_set(
    name: ProfileArg,
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. model.temperature or voice.voice.",
                                       autocompletion=_completer("key"))],
    value: Annotated[str, typer.Argument(help="TOML value: 0.2, true, \"text\", [..]; bare words are strings.")],
) -> None:
    """Set one key in a user profile (the rest of the file, comments included, is kept)."""
    from voicecli.profiles_cli import set_key

    set_key(name, key, value)


@profiles_app.command("validate")
def profiles_validate(paths: Annotated[list[str], typer.Argument(metavar="PATH|NAME...",
                                                                 autocompletion=_completer("profile"))]) -> None:
    """Check profiles; prints one line per profile, warnings on stderr, exits 3 at the first error."""
    from voicecli.profiles_cli import validate

    validate(paths)


# ---- logs -----------------------------------------------------------------------------------

CountOpt = Annotated[int, typer.Option("-n", "--count", metavar="N", help="How many conversations (newest first).")]
SinceOpt = Annotated[Optional[str], typer.Option(
    "--since", metavar="AGE|DATE", help="Only conversations active since then: 30m, 2h, 3d, 1w, 2026-05-01.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]


@logs_app.callback(invoke_without_command=True)
def logs(ctx: typer.Context, n: CountOpt = 20, since: SinceOpt = None, json_out: JsonOpt = False) -> None:
    """The latest conversations: id, time, model, first words, turns, tokens, cost."""
    if ctx.invoked_subcommand is None:
        from voicecli.logs import list_conversations

        list_conversations(n, since, json_out)
    elif ctx.invoked_subcommand in ("show", "path", "rm", "title") and _given(ctx, "n", "since"):
        raise VoicecliError(f"-n and --since choose among conversations: they apply to `logs` and `logs search`, "
                            f"not to `logs {ctx.invoked_subcommand}`", exit_code=ExitCode.USAGE)


def _given(ctx: typer.Context, *names: str) -> list[str]:
    """Which of these options were given on the command line (or by environment), not left at their default."""
    # by name: typer carries its own copy of click, whose ParameterSource is not click's
    return [name for name in names if getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE",
                                                                                                 "ENVIRONMENT")]


def _with_group_options(ctx: typer.Context, **values):
    """`voicecli logs -n 5 search x` as `voicecli logs search x -n 5`: what the `logs` group was given
    before the subcommand applies to it, unless the subcommand was given the same option itself."""
    group = ctx.parent
    for name in _given(group, *values):
        if name not in _given(ctx, name):
            values[name] = group.params[name]
    return values.values()


@logs_app.command("show")
def logs_show(
    ctx: typer.Context,
    cid: Annotated[Optional[str], typer.Argument(metavar="[ID]", help="A conversation id or its unique start.")] = None,
    latest: Annotated[bool, typer.Option("-c", "--continue", help="The latest conversation (also without ID).")] = False,
    json_out: JsonOpt = False,
    raw: Annotated[bool, typer.Option("--raw", help="Markdown source even on a terminal.")] = False,
) -> None:
    """One conversation: rendered markdown on a terminal, markdown text when piped, or --json."""
    from voicecli.logs import show_conversation

    (json_out,) = _with_group_options(ctx, json_out=json_out)
    if latest and cid:
        raise VoicecliError("give a conversation ID or -c, not both", exit_code=ExitCode.USAGE)
    show_conversation(cid, json_out, raw)


@logs_app.command("search")
def logs_search(
    ctx: typer.Context,
    text: Annotated[list[str], typer.Argument(metavar="TEXT...", help="Words to find (any case), as one phrase.")],
    n: CountOpt = 20, since: SinceOpt = None, json_out: JsonOpt = False,
) -> None:
    """Conversations whose user or assistant messages contain TEXT, with the matching lines."""
    from voicecli.logs import search_conversations

    n, since, json_out = _with_group_options(ctx, n=n, since=since, json_out=json_out)
    search_conversations(" ".join(text), n, since, json_out)


@logs_app.command("rm")
def logs_rm(
    cids: Annotated[Optional[list[str]], typer.Argument(metavar="[ID...]", help="Conversation ids or unique starts.")] = None,
    older_than: Annotated[Optional[str], typer.Option("--older-than", metavar="AGE",
                                                      help="Also every conversation last active before AGE ago: 12h, 30d, 8w.")] = None,
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Delete without asking (needed when not on a terminal).")] = False,
) -> None:
    """Delete conversations (asks first on a terminal)."""
    from voicecli.logs import remove_conversations

    remove_conversations(cids or [], older_than, yes)


@logs_app.command("title")
def logs_title(
    cid: Annotated[str, typer.Argument(metavar="ID", help="A conversation id or its unique start.")],
    title: Annotated[list[str], typer.Argument(metavar="TITLE...", help="The title; \"\" takes it back.")],
) -> None:
    """Give a conversation a title (shown by `logs`, found by `logs search`)."""
    from voicecli.logs import set_title

    set_title(cid, " ".join(title))


@logs_app.command("path")
def logs_path(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The folder the conversation log lives in."""
    from voicecli.logs import print_path

    (json_out,) = _with_group_options(ctx, json_out=json_out)
    print_path(json_out)


# ---- tools ----------------------------------------------------------------------------------


@tools_app.command("list")
def tools_list(profile: ProfileOpt = None,
               json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """Each tool, its approval policy and the schema each dialect (responses, chat, realtime) receives."""
    from voicecli.tools_cli import list_tools

    list_tools(Selection(profile).load_profile(), json_out)


@tools_app.command("run")
def tools_run(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    arguments: Annotated[str, typer.Argument(metavar="JSON", help="The arguments as one JSON object.")] = "{}",
    profile: ProfileOpt = None, debug: DebugOpt = False,
) -> None:
    """Run one tool locally with the same checks, limits and environment as in a conversation."""
    _State.debug = debug
    from voicecli.tools_cli import run_tool

    raise typer.Exit(run_tool(Selection(profile).load_profile(), name, arguments, debug))


# ---- entry point ----------------------------------------------------------------------------


def _shown(text: str) -> str:
    """An error line as printed: no loaded key, no URL userinfo, and on a terminal no control
    characters (it may quote what a server sent)."""
    from voicecli.sanitize import for_terminal, redact

    return for_terminal(redact(text), sys.stderr)


def _app_for(argv: list[str]) -> typer.Typer:
    """`app` with only the command being run: Typer builds every command's options from its
    signature on each start (~25 ms for all of them), though one runs. Anything else (no
    command, an unknown one, shell completion) gets the whole app."""
    if len(argv) < 2:
        return app
    name = argv[1]
    if name in ("--version", "-V"):  # answered by the eager callback before any command is looked at
        commands, groups = [], []
    else:
        from typer.main import get_command_name

        commands = [c for c in app.registered_commands if (c.name or get_command_name(c.callback.__name__)) == name]
        groups = [g for g in app.registered_groups if g.name == name]
        if not commands and not groups:
            return app
    import copy

    trimmed = copy.copy(app)
    trimmed.registered_commands, trimmed.registered_groups = commands, groups
    return trimmed


def main() -> None:
    try:
        _app_for(sys.argv)()
    except VoicecliError as exc:
        if _State.debug:
            import traceback

            traceback.print_exc()
        print(f"voicecli: {_shown(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {_shown(exc.hint)}", file=sys.stderr)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        print("voicecli: interrupted", file=sys.stderr)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:  # a bug: one line unless --debug
        if _State.debug:
            raise
        print(f"voicecli: internal error: {type(exc).__name__}: {_shown(str(exc))}", file=sys.stderr)
        print("  hint: re-run with --debug for the traceback, and please report it", file=sys.stderr)
        sys.exit(int(ExitCode.INTERNAL))
    finally:
        # The interpreter's clean-up at exit runs full garbage collections over every object the
        # imports made (~30 ms of an `infer`); they all go with the process anyway. Objects made
        # from here on (atexit handlers, threads still finishing) are collected as usual. So what
        # is still alive now stays to the end, cycles included: a native object (libsoxr's nanobind
        # resamplers) must be released by its owner's close, or nanobind lists it as leaked at exit.
        import gc

        gc.freeze()


if __name__ == "__main__":
    main()

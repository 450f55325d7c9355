"""A fake command-line agent for the command connector's tests.

Usage: agent.py MODE PROMPT_FILE OUTPUT_FILE MODEL. It answers "echo: <prompt>" in the
shape MODE names. If AGENT_PID_FILE is set, it first writes its pid there, so a test can
check that a killed agent is really gone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable


def emit(obj: object) -> None:
    """One JSON line on stdout, flushed at once."""
    print(json.dumps(obj), flush=True)


def stream(answer: str, output_file: str, model: str) -> int:
    """Text events word by word, then a result with usage."""
    for word in answer.split(" "):
        emit({"type": "text", "text": word + " "})
    emit({"type": "result", "result": answer, "usage": {"input_tokens": 7, "output_tokens": 3}})
    return 0


def claude(answer: str, output_file: str, model: str) -> int:
    """Claude Code's stream-json shape."""
    emit({"type": "system", "subtype": "init", "model": model})
    emit({"type": "assistant", "message": {"content": [{"type": "text", "text": answer}]}})
    emit({"type": "result", "subtype": "success", "is_error": False, "result": answer})
    return 0


def plain(answer: str, output_file: str, model: str) -> int:
    """Plain text lines."""
    print("line one", flush=True)
    print(f"model={model}", flush=True)
    return 0


def outfile(answer: str, output_file: str, model: str) -> int:
    """Chatter on stdout, the answer in the output file."""
    print("progress chatter that is not the answer", flush=True)
    with open(output_file, "w", encoding="utf-8") as f:
        f.write(json.dumps({"type": "result", "result": answer}) + "\n")
    return 0


def fail(answer: str, output_file: str, model: str) -> int:
    """Some output, a complaint on stderr, exit status 3."""
    print("partial", flush=True)
    print("boom: the agent broke", file=sys.stderr, flush=True)
    return 3


def error(answer: str, output_file: str, model: str) -> int:
    """An error event."""
    emit({"type": "error", "message": "quota exhausted"})
    return 0


def hang(answer: str, output_file: str, model: str) -> int:
    """One event, then nothing for a minute."""
    emit({"type": "text", "text": "thinking..."})
    time.sleep(60)
    return 0


def silent(answer: str, output_file: str, model: str) -> int:
    """Nothing at all for a minute."""
    time.sleep(60)
    return 0


MODES: dict[str, Callable[[str, str, str], int]] = {
    f.__name__: f for f in (stream, claude, plain, outfile, fail, error, hang, silent)}


def main() -> int:
    """Run one mode."""
    mode, prompt_file, output_file, model = sys.argv[1:5]
    pid_file = os.environ.get("AGENT_PID_FILE")
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    with open(prompt_file, encoding="utf-8") as f:
        prompt = f.read()
    return MODES[mode](f"echo: {prompt}", output_file, model)


if __name__ == "__main__":
    sys.exit(main())

"""`genq-client`: submit, follow, fetch and manage genq jobs from a shell.

Jobs print as JSON on stdout; the live status and download progress go to stderr. Exit status: 0
done (a job waited for succeeded), 1 the job failed, timed out or was cancelled, or the wait ran
out; 2 a usage or API error, its message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from genq_client._sync import Client
from genq_client.errors import GenqError, WaitTimeout
from genq_client.files import CLEAR_LINE
from genq_client.models import Job

NAMED_INPUTS = ("model", "resolution", "duration", "prompt", "image_url", "scene", "category", "upload_key")
Command = Callable[[Client, argparse.Namespace], int]


class UsageError(GenqError):
    """A command line that does not make a job input."""


def main(argv: Sequence[str] | None = None, *, client: Client | None = None) -> int:
    """The CLI; `client` replaces the one made from --api-url/--api-key (tests)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (2) or --help (0), already printed
        return exc.code if isinstance(exc.code, int) else 2
    command: Command = args.command
    try:
        with client or Client(args.api_url, args.api_key) as api:
            return command(api, args)
    except WaitTimeout as exc:
        if exc.job is not None:
            print_job(exc.job)
        print(f"genq-client: {exc}", file=sys.stderr)
        return 1
    except GenqError as exc:
        print(f"genq-client: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def submit(api: Client, args: argparse.Namespace) -> int:
    options = {"external_id": args.external_id, "priority": args.priority}
    options |= {"webhook_url": args.webhook_url, "webhook_events": args.webhook_events}
    job = api.submit(args.kind, job_input(args), idempotency_key=args.idempotency_key, **options)
    if not (args.wait or args.download):
        print_job(job)
        return 0
    return follow(api, job.id, args.timeout, args.download)


def wait(api: Client, args: argparse.Namespace) -> int:
    return follow(api, args.id, args.timeout, None)


def follow(api: Client, job_id: str, timeout: float, folder: str | None) -> int:
    """Wait with a live status line, print the final job; 0 only when it succeeded."""
    line = StatusLine(sys.stderr)
    try:
        job = api.wait(job_id, timeout=timeout, on_update=line.show)
    finally:
        line.close()
    print_job(job)
    if job.succeeded and folder is not None:
        api.download(job, folder)  # a line per file on stderr
    return 0 if job.succeeded else 1


def download(api: Client, args: argparse.Namespace) -> int:
    for path in api.download(args.id, args.folder):
        print(path)
    return 0


def list_jobs(api: Client, args: argparse.Namespace) -> int:
    filters = {"status": args.status, "kind": args.kind, "external_id": args.external_id}
    page = api.list(**filters, limit=args.limit, cursor=args.cursor)
    print(json.dumps({"items": [job.to_dict() for job in page.items], "next_cursor": page.next_cursor}, indent=2))
    return 0


def one_job(call: Callable[[Client, str], Job]) -> Command:
    def run(api: Client, args: argparse.Namespace) -> int:
        print_job(call(api, args.id))
        return 0

    return run


def print_job(job: Job) -> None:
    print(json.dumps(job.to_dict(), indent=2, ensure_ascii=False))


def job_input(args: argparse.Namespace) -> dict[str, Any]:
    """--input-json first, then each --input, then the named options: a later one wins."""
    given = _json(args.input_json, "--input-json") if args.input_json is not None else {}
    if not isinstance(given, dict):
        raise UsageError("--input-json must be a JSON object")
    given.update(_pair(text) for text in args.input)
    return given | {name: getattr(args, name) for name in NAMED_INPUTS if getattr(args, name) is not None}


def _pair(text: str) -> tuple[str, Any]:
    """`key=value` gives a string; `key:=value` a JSON value (`duration:=10`, `low_poly:=true`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.rstrip(":"):
        raise UsageError(f"--input takes key=value or key:=json, not {text!r}")
    return (key[:-1], _json(value, f"--input {key}")) if key.endswith(":") else (key, value)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON: {exc}") from None


class StatusLine:
    """The job's state on one line, rewritten in place on a terminal; a line per change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream, self._live, self._open = stream, stream.isatty(), False

    def show(self, job: Job) -> None:
        text = describe(job)
        self._stream.write(f"{CLEAR_LINE}{text}" if self._live else f"{text}\n")
        self._stream.flush()
        self._open = self._live

    def close(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._stream.flush()


def describe(job: Job) -> str:
    parts = [job.id, job.status]
    if job.queue is not None:
        parts.append(f"position {job.queue.position} in line ({job.queue.reason})")
    if job.error is not None:
        parts.append(f"{job.error.code}: {job.error.message}")
    if job.results is not None:
        parts.append(f"{len(job.results)} result(s)")
    return "  ".join(parts)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="genq-client", description="Submit and follow genq jobs.")
    top.add_argument("--api-url", help="the API (default: $GENQ_API_URL, else http://127.0.0.1:8000)")
    top.add_argument("--api-key", help="your API key (default: $GENQ_API_KEY)")
    commands = top.add_subparsers(required=True, metavar="COMMAND")
    _submit_parser(commands.add_parser("submit", help="submit a job; --wait to follow it to its end"))
    waiting = commands.add_parser("wait", help="follow a job to its end; exit 0 when it succeeded")
    waiting.add_argument("id")
    waiting.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    waiting.set_defaults(command=wait)
    for name, call, text in (
        ("get", Client.get, "print a job"),
        ("cancel", Client.cancel, "cancel a job (refunded)"),
        ("retry", Client.retry, "run a failed, timed-out or cancelled job again, as a new job"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("id")
        sub.set_defaults(command=one_job(call))
    saving = commands.add_parser("download", help="save a succeeded job's results as {id}-{i}.{ext}")
    saving.add_argument("id")
    saving.add_argument("folder")
    saving.set_defaults(command=download)
    _list_parser(commands.add_parser("list", help="your jobs, newest first"))
    return top


def _submit_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("kind", help="basic_clean, model_pose12, video or model_3d")
    for name in NAMED_INPUTS:
        sub.add_argument(f"--{name.replace('_', '-')}", type=int if name == "duration" else str)
    sub.add_argument("--input", action="append", default=[], metavar="KEY=VALUE", help="key=text or key:=json")
    sub.add_argument("--input-json", metavar="JSON", help="the input as a JSON object (options add to it)")
    sub.add_argument("--external-id", help="your own reference for the job, unique among your jobs")
    sub.add_argument("--priority", choices=["interactive", "batch"])
    sub.add_argument("--idempotency-key", help="resubmitting with the same key gives back the same job")
    sub.add_argument("--webhook-url", help="where genq posts the job's signed webhooks")
    sub.add_argument("--webhook-events", choices=["completed", "all"], help="the terminal event only, or every one")
    sub.add_argument("--wait", action="store_true", help="follow the job to its end; exit 0 when it succeeded")
    sub.add_argument("--download", metavar="DIR", help="wait, then save the results in DIR")
    sub.add_argument("--timeout", type=float, default=600.0, help="with --wait: give up after this many seconds")
    sub.set_defaults(command=submit)


def _list_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--status")
    sub.add_argument("--kind")
    sub.add_argument("--external-id")
    sub.add_argument("--limit", type=int)
    sub.add_argument("--cursor")
    sub.set_defaults(command=list_jobs)

"""``main(argv)``: parse the arguments (:mod:`~sparkvision.cli.parser`), run the command
(:mod:`~sparkvision.cli.commands`), and map its errors to one clear paragraph and an exit status.

``main(argv)`` returns an exit status; a :class:`SparkVisionError` is printed as one paragraph
(``--traceback`` shows the whole trace). Exit codes: 0 done, 1 unexpected failure, 2 bad
option, 3 data not found, 4 bad data, 5 download failed, 6 no usable Java, 7 the JVM died,
128 + the signal when stopped (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; 141 when the reader of
stdout went away).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from typing import Sequence

from sparkvision.cli.parser import build_parser
from sparkvision.errors import SparkVisionError, failure_summary
from sparkvision.runtime.stopping import Stopped, handle_stop_signals


def _jvm_died(err: BaseException) -> bool:
    """Whether ``err`` means the JVM behind the session is gone (py4j can no longer reach it)."""
    from py4j.protocol import Py4JNetworkError

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (ConnectionRefusedError, ConnectionResetError, Py4JNetworkError)):
            return True
        err = err.__cause__ or err.__context__
    return False


def _refused_setting(args: argparse.Namespace, err: BaseException) -> str | None:
    """The message for a failure that names a ``--conf`` key the user gave (Spark refused its value)."""
    text = str(err)
    for key, value in getattr(args, "conf", None) or ():
        if key in text:  # Spark's own words about it, else the failure's summary
            said = next((line.strip().removeprefix("Caused by: ") for line in text.splitlines() if key in line),
                        failure_summary(err))
            return f"Spark refused the setting --conf {key}={value}: {said[:300]}. Fix its value, or drop it."
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, and turn errors into a message and an exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the command line (tests calling main() in-process keep their own handlers)
        handle_stop_signals()
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader of our stdout went away (`sparkvision predict … | head`): not an error of
        # ours. Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except SparkVisionError as err:
        if args.traceback:
            traceback.print_exc()
        print(f"\nerror: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        what = signal.Signals(err.signum).name if isinstance(err, Stopped) else "interrupted"
        print(f"\n{what}: stopped; nothing half-written was kept.", file=sys.stderr)
        return 128 + (err.signum if isinstance(err, Stopped) else signal.SIGINT)
    except Exception as err:  # unexpected: keep it short unless asked
        if args.traceback:
            traceback.print_exc()
        if _jvm_died(err):
            print("\nerror: Spark's JVM stopped in the middle of the work, most often because it ran out of "
                  "memory. Nothing half-written was kept. Run again with a larger --driver-memory (local mode) "
                  "or --executor-memory (a cluster), or less work per run (e.g. fewer --centroids).",
                  file=sys.stderr)
            return 7
        refused = _refused_setting(args, err)
        if refused:
            print(f"\nerror: {refused}", file=sys.stderr)
            return 2
        print(f"\nerror: unexpected {type(err).__name__}: {failure_summary(err)}\n"
              "(run again with --traceback for the full trace)", file=sys.stderr)
        return 1

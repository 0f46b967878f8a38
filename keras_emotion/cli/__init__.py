"""The command-line tools: `keras-emotion preprocess|train|evaluate|export|predict|visualize`
(console entry point `main`), and `scripts/<command>.py`, which run the same `main`s.

Each command is a module here defining its absl flags and `main(argv)`. The tools print their
own progress and results; TensorFlow's and absl's INFO lines are hidden (warnings and errors
still show) unless `--verbosity 0` (absl's INFO) or more is asked for, or TF_CPP_MIN_LOG_LEVEL
is set.
"""

import importlib
import logging
import os
import sys

# Read by TensorFlow's C++ logging when it loads, which the command modules' imports do next.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app, flags  # noqa: E402  (after the logging default above)
from absl import logging as absl_logging  # noqa: E402

COMMANDS = ("preprocess", "train", "evaluate", "export", "predict", "visualize")


def run(command_main) -> None:
    """`app.run(command_main)` with the tools' logging: absl and TensorFlow's Python logger at
    WARNING unless --verbosity was given."""

    def quiet_main(argv):
        if not flags.FLAGS["verbosity"].present:
            absl_logging.set_verbosity(absl_logging.WARNING)
            logging.getLogger("tensorflow").setLevel(logging.WARNING)
        return command_main(argv)

    app.run(quiet_main)


def main() -> None:
    """`keras-emotion <command> [flags]`: runs the command module's `main` with the flags."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        asked = len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help")
        usage = f"usage: keras-emotion {{{'|'.join(COMMANDS)}}} [--flags]  (--helpfull after a command lists its flags)"
        print(usage, file=sys.stdout if asked else sys.stderr)
        sys.exit(0 if asked else 2)
    command = sys.argv.pop(1)
    sys.argv[0] = f"keras-emotion {command}"
    # Only the chosen command's module is imported: each defines its own flags, and several
    # commands share flag names (--model_dir, --output_dir).
    run(importlib.import_module(f"keras_emotion.cli.{command}").main)

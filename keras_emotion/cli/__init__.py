"""The command-line tools: `keras-emotion <command>` (console entry point `main`) for the commands
of `COMMANDS`, and `scripts/<command>.py` (`scripts/pretrain_backbone.py` for `pretrain`), which
run the same `main`s.

Each command is a module here (`train-face-clips` is `train_face_clips`) defining its absl flags
and `main(argv)`. One vocabulary names what the commands read and write:

    --input       videos, images, folders of images or frames, corpus folders
    --data        TFRecord folders or globs of shards (--val_data: the validation shards)
    --model       a trained-model folder (or an exported SavedModel where a command takes one)
    --output_dir  a folder the command writes; --output: a file it writes

Flags that name one role among several corpora keep role names (`--fer2013_dir`, `--ck48_dir`).
The older names are deprecated aliases (`define_alias`): they still work, with one warning line
naming the new flag. Default input and output folders are relative to the current folder
(`SHARED_DATA`, `runs/...`, `tfrecords/...`), never inside the package.

The tools print their own progress and results; TensorFlow's and absl's INFO lines are hidden
(warnings and errors still show) unless `--verbosity 0` (absl's INFO) or more is asked for, or
TF_CPP_MIN_LOG_LEVEL is set. The notices TensorFlow's C++ libraries print while they load, which
no setting hides, are filtered out of standard error when this package imports TensorFlow
(`TENSORFLOW_LOAD_NOTICE`): import `keras_emotion.cli` before anything that imports TensorFlow.
"""

import contextlib
import dataclasses
import importlib
import logging
import os
import re
import sys
import tempfile
from typing import Callable, Iterator

# Read by TensorFlow's C++ logging when it loads, which the import below does.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app, flags  # noqa: E402  (after the logging default above)
from absl import logging as absl_logging  # noqa: E402

COMMANDS = (
    "preprocess", "train", "evaluate", "export", "predict", "visualize", "pretrain", "average-weights", "train-face-clips",
    "ablation", "align-images",
)
# The corpora's default location: `../shared/data` of the current folder (the repository root
# for scripts/run_demo.sh and the README's commands).
SHARED_DATA = os.path.join("..", "shared", "data")
# What TensorFlow's C++ libraries print while they load, whatever TF_CPP_MIN_LOG_LEVEL says:
# absl's notice that logging is not initialised yet, and the INFO notes on oneDNN, the CUDA
# probe of the `tensorflow` wheel on a machine without a GPU, and the CPU's instructions.
TENSORFLOW_LOAD_NOTICE = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|^I\d{4} \d\d:\d\d:[\d.]+ +\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] "
    r"|^To enable the following instructions: "
)

FLAGS = flags.FLAGS
_ALIASES: dict[str, str] = {}  # deprecated flag name -> the name of the flag it sets


@contextlib.contextmanager
def filtered_stderr(drop: re.Pattern) -> Iterator[None]:
    """Holds back what is written to standard error (file descriptor 2, C and C++ code's too)
    inside the block, and writes it afterwards without the lines matching `drop`."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not drop.search(line.rstrip("\n")))
            if kept:
                os.write(2, kept.encode())


if "tensorflow" not in sys.modules:
    with filtered_stderr(TENSORFLOW_LOAD_NOTICE):
        import tensorflow  # noqa: E402, F401  (loads its C++ libraries once, their notices filtered)


def define_alias(old: str, new: str) -> None:
    """Defines `--old` as a deprecated alias of the flag `--new` (defined before): given on the
    command line, its value goes to `--new` and one line `--old is deprecated: use --new` is
    printed on standard error; giving both is a usage error (`resolve_aliases`, which `run` calls).
    """
    flag = FLAGS[new]
    flags.DEFINE(
        flag.parser,
        old,
        None,
        f"Deprecated alias of --{new}.",
        flag_values=FLAGS,
        serializer=flag.serializer,
        module_name=FLAGS.find_module_defining_flag(new),
    )
    _ALIASES[old] = new


def resolve_aliases() -> None:
    """Moves the value of each deprecated alias given on the command line to its flag, warning
    once per alias.

    Raises:
        app.UsageError: an alias and its flag were both given.
    """
    for old, new in _ALIASES.items():
        if old not in FLAGS or not FLAGS[old].present:
            continue
        if FLAGS[new].present:
            raise app.UsageError(f"give --{new} or its deprecated alias --{old}, not both")
        print(f"--{old} is deprecated: use --{new}", file=sys.stderr, flush=True)
        setattr(FLAGS, new, FLAGS[old].value)
        FLAGS[new].present = FLAGS[old].present


def config_from_flags(config_class: type, flags_module: str, **values):
    """A `config_class` dataclass whose fields take the values of the flags of the same name
    defined by `flags_module` (list flags as tuples), then `values`; other fields keep their
    defaults. One path from flags to a run's config: a flag added to the command and to the
    config reaches the run without more code."""
    defined = {flag.name: flag.value for flag in FLAGS.get_flags_for_module(flags_module)}
    from_flags = {
        field.name: tuple(defined[field.name]) if isinstance(defined[field.name], list) else defined[field.name]
        for field in dataclasses.fields(config_class)
        if field.name in defined
    }
    return config_class(**{**from_flags, **values})


def run(command_main: Callable) -> None:
    """`app.run(command_main)` with the tools' logging (absl and TensorFlow's Python logger at
    WARNING unless --verbosity was given) and the deprecated flag names resolved."""

    def quiet_main(argv):
        if not FLAGS["verbosity"].present:
            absl_logging.set_verbosity(absl_logging.WARNING)
            logging.getLogger("tensorflow").setLevel(logging.WARNING)
        resolve_aliases()
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
    # commands share flag names (--model, --output_dir).
    run(importlib.import_module(f"keras_emotion.cli.{command.replace('-', '_')}").main)

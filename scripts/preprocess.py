"""Preprocesses a face-video corpus into aligned-face TFRecord shards (see keras_emotion.data.preprocess).

The command `keras-emotion preprocess` runs the same `main` (keras_emotion.cli.preprocess); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.preprocess import main

if __name__ == "__main__":
    run(main)

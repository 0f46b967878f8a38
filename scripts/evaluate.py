"""Evaluates a trained model on ALL frames of every clip of a TFRecord split, or on a folder of
still face images (each a 1-frame clip).

The command `keras-emotion evaluate` runs the same `main` (keras_emotion.cli.evaluate); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.evaluate import main

if __name__ == "__main__":
    run(main)

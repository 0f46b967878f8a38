"""Exports a trained model as a SavedModel for TensorFlow Serving (see keras_emotion.export).

The command `keras-emotion export` runs the same `main` (keras_emotion.cli.export); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.export import main

if __name__ == "__main__":
    run(main)

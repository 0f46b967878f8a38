"""Predicts the emotion of every face in a video (or a folder of frames) and writes JSON.

The command `keras-emotion predict` runs the same `main` (keras_emotion.cli.predict); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.predict import main

if __name__ == "__main__":
    run(main)

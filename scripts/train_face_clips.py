"""Trains the shipped video model on FER2013 + CK+48 face crops (keras_emotion.training.face_clips).

The command `keras-emotion train-face-clips` runs the same `main` (keras_emotion.cli.train_face_clips); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.train_face_clips import main

if __name__ == "__main__":
    run(main)

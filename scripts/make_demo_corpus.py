"""Generates the synthetic demo corpus (see keras_emotion.data.demo) in the AFEW layout.

    python scripts/make_demo_corpus.py --output demo_corpus

Writes `<output>/{Train,Val}/<class>/<clip>.avi`, `<output>/demo_sequence.avi`, README.txt and
corpus.json; does nothing when `<output>` already holds the same corpus. Prints where and how long.
"""

import os
import time

from absl import app, flags

from keras_emotion.data.demo import SEQUENCE_NAME, make_demo_corpus

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("output", os.path.join(REPO_ROOT, "demo_corpus"), "Folder to create.")
flags.DEFINE_integer("num_train", 16, "Clips per class in Train.")
flags.DEFINE_integer("num_val", 6, "Clips per class in Val.")
flags.DEFINE_integer("frames", 12, "Frames per clip.")
flags.DEFINE_integer("seed", 0, "The same seed always gives the same videos.")


def main(argv):
    del argv
    start = time.perf_counter()
    root = make_demo_corpus(FLAGS.output, FLAGS.num_train, FLAGS.num_val, FLAGS.frames, FLAGS.seed)
    print(f"demo corpus ready in {time.perf_counter() - start:.1f} s: {root} (sequence video {root / SEQUENCE_NAME})")


if __name__ == "__main__":
    app.run(main)

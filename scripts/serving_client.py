"""Sends clips to a TensorFlow Serving model exported by `keras-emotion export` and prints the answer.

    # videos (or folders of frames): faces are aligned here, sent as JPEGs (signature encoded_frames)
    python scripts/serving_client.py --input clip1.avi,clip2.avi --server http://localhost:8501 --model_name emotion
    # clips of a TFRecord shard, sent as serialised SequenceExamples (signature tf_example), over gRPC
    python scripts/serving_client.py --input tfrecords/ck48/val-00000.tfrecord --max_clips 4 \
        --server localhost:8500 --model_name emotion
    # print the REST body instead of sending it
    python scripts/serving_client.py --input clip1.avi --dry_run

--server is a REST URL (http://host:8501) or a gRPC host:port (8500). gRPC needs the optional
extra: pip install "keras_emotion[serving]". The requests are built by
keras_emotion.inference.serving_client.
"""

import json

from absl import app, flags

from keras_emotion.cli import run
from keras_emotion.inference.serving_client import (
    REST_FORMATS,
    build_request,
    grpc_request,
    rest_body,
    send_grpc,
    send_rest,
)

FLAGS = flags.FLAGS
flags.DEFINE_list("input", None, "Video files / frame folders, or ONE .tfrecord file of aligned clips.", required=True)
flags.DEFINE_string("server", "http://localhost:8501", "REST URL (http://host:8501) or gRPC host:port.")
flags.DEFINE_string("model_name", "emotion", "MODEL_NAME the server serves.")
flags.DEFINE_integer("version", None, "Model version to ask for; default the server's latest.")
flags.DEFINE_enum("format", "instances", REST_FORMATS, "REST body format: row (instances) or columnar (inputs).")
flags.DEFINE_integer("max_clips", 1, "Clips to send from a .tfrecord file.")
flags.DEFINE_integer("max_frames", 32, "Frames per video, evenly spaced.")
flags.DEFINE_enum("landmarks", "68", ["68", "5"], "dlib shape predictor used to align video faces.")
flags.DEFINE_integer("upsample", 1, "Face detector upsampling for videos.")
flags.DEFINE_float("timeout", 60.0, "Seconds to wait for the server.")
flags.DEFINE_bool("dry_run", False, "Print the REST body (or the gRPC request) instead of sending it.")


def main(argv):
    del argv
    try:
        request = build_request(FLAGS.input, FLAGS.max_clips, FLAGS.max_frames, int(FLAGS.landmarks), FLAGS.upsample)
        if FLAGS.server.startswith(("http://", "https://")):
            body = rest_body(request, FLAGS.format)
            answer = body if FLAGS.dry_run else send_rest(FLAGS.server, FLAGS.model_name, body, FLAGS.version, FLAGS.timeout)
        else:
            proto = grpc_request(request, FLAGS.model_name, FLAGS.version)
            if FLAGS.dry_run:
                print(proto)
                return
            answer = send_grpc(FLAGS.server, proto, FLAGS.timeout)
    except ValueError as error:  # a bad --input
        raise app.UsageError(str(error)) from None
    except (ImportError, RuntimeError) as error:  # gRPC extra missing, server error or unreachable
        raise SystemExit(f"error: {error}") from None
    print(json.dumps(answer, indent=2))


if __name__ == "__main__":
    run(main)

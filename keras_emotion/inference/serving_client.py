"""A client of TensorFlow Serving for models exported by `export.saved_model`: requests of the
`encoded_frames` (aligned faces as JPEGs) and `tf_example` (serialised clips) signatures, as REST
bodies ("instances" row format or "inputs" columnar format; bytes as {"b64": ...}) or gRPC
PredictRequests, and sending them. Clips of different lengths are padded with empty JPEG
strings, which the encoded_frames signature treats as padding.

gRPC needs the optional extra `keras_emotion[serving]` (tensorflow-serving-api and grpcio);
REST needs nothing more. scripts/serving_client.py is the command line.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import urllib.error
import urllib.request
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_emotion.data import faces, pipeline, schema, video
from keras_emotion.data.faces import AlignmentConfig, FaceAligner

REST_FORMATS = ("instances", "inputs")
SERVING_EXTRA_HINT = 'gRPC needs the optional package tensorflow-serving-api: pip install "keras_emotion[serving]"'


@dataclasses.dataclass
class ServingRequest:
    """What to send: a signature and its inputs, each an array with the batch (clips) first.

    Attributes:
        signature_name: "encoded_frames" or "tf_example" (see keras_emotion.export.saved_model).
        inputs: input name -> array; bytes as dtype object arrays.
    """

    signature_name: str
    inputs: dict


def encoded_frames_request(clips: Sequence[Sequence[bytes]]) -> ServingRequest:
    """Request of the `encoded_frames` signature: "frames" (B, F) JPEG strings, the clips padded
    to the longest with empty strings.

    Raises:
        ValueError: no clip, or a clip without frames.
    """
    if not clips or any(len(clip) == 0 for clip in clips):
        raise ValueError(f"need at least one clip and one frame per clip; got clip lengths {[len(c) for c in clips]}")
    longest = max(len(clip) for clip in clips)
    frames = np.full((len(clips), longest), b"", dtype=object)
    for index, clip in enumerate(clips):
        frames[index, : len(clip)] = list(clip)
    return ServingRequest("encoded_frames", {"frames": frames})


def tf_example_request(examples: Sequence[bytes]) -> ServingRequest:
    """Request of the `tf_example` signature: "examples" (B,) serialised SequenceExamples."""
    if not examples:
        raise ValueError("need at least one serialised clip")
    return ServingRequest("tf_example", {"examples": np.array(list(examples), dtype=object)})


def rest_body(request: ServingRequest, rest_format: str = "instances") -> dict:
    """The JSON body of a TF Serving REST predict call.

    "instances": {"signature_name", "instances": [{input name: value of clip b}, ...]};
    "inputs": {"signature_name", "inputs": {input name: value with the batch axis}}.
    """
    if rest_format not in REST_FORMATS:
        raise ValueError(f"rest_format={rest_format!r}; expected one of {REST_FORMATS}")
    columns = {name: _to_json(values.tolist()) for name, values in request.inputs.items()}
    body = {"signature_name": request.signature_name}
    if rest_format == "inputs":
        body["inputs"] = columns
    else:
        batch_size = len(next(iter(columns.values())))
        body["instances"] = [{name: values[index] for name, values in columns.items()} for index in range(batch_size)]
    return body


def grpc_request(request: ServingRequest, model_name: str, version: Optional[int] = None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` of `request`.

    Raises:
        ImportError: tensorflow-serving-api is not installed (the message says how to get it).
    """
    predict_pb2, _ = _serving_apis()
    proto = predict_pb2.PredictRequest()
    proto.model_spec.name = model_name
    proto.model_spec.signature_name = request.signature_name
    if version is not None:
        proto.model_spec.version.value = version
    for name, values in request.inputs.items():
        proto.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    return proto


def send_rest(server: str, model_name: str, body: dict, version: Optional[int] = None, timeout: float = 60.0) -> dict:
    """POSTs `body` to `<server>/v1/models/<model_name>[/versions/<version>]:predict`; returns the
    decoded JSON answer.

    Raises:
        RuntimeError: the server answered with an error (its message included) or is unreachable.
    """
    url = f"{server.rstrip('/')}/v1/models/{model_name}"
    if version is not None:
        url += f"/versions/{version}"
    url += ":predict"
    call = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{url}: HTTP {error.code}: {error.read().decode('utf-8', 'replace')}") from None
    except urllib.error.URLError as error:
        raise RuntimeError(f"{url}: {error.reason}") from None


def send_grpc(server: str, proto, timeout: float = 60.0) -> dict:
    """Calls PredictionService.Predict on `server` (host:port); returns {"outputs": {name: value}}
    with the same values as the REST columnar answer (strings decoded as UTF-8)."""
    import grpc  # installed with tensorflow-serving-api (the "serving" extra)

    _, prediction_service_pb2_grpc = _serving_apis()
    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(proto, timeout=timeout)
        except grpc.RpcError as error:
            raise RuntimeError(f"{server}: gRPC {error.code().name}: {error.details()}") from None
    outputs = {name: tf.make_ndarray(tensor).tolist() for name, tensor in response.outputs.items()}
    return {"outputs": _decode_strings(outputs)}


def clip_jpegs_from_video(path: str, aligner, max_frames: Optional[int] = None) -> list:
    """The aligned faces of a video (or folder of frames) as JPEG bytes, one per frame.

    Args:
        path: a video file, a folder of frame images or one image (see `data.video.iter_frames`).
        aligner: a `data.faces.FaceAligner`; its config gives the face size and JPEG quality.
        max_frames: keep at most this many frames, evenly spaced (the pipeline's "uniform"
            sampling); None keeps all.
    """
    frames, _ = video.read_frames(path)
    if max_frames is not None and len(frames) > max_frames:
        indices = pipeline.sample_frame_indices(len(frames), max_frames, "uniform", seed=None).numpy()
        frames = [frames[index] for index in indices]
    aligned = aligner.align_clip(frames, source=path)
    return [faces.encode_jpeg(face, aligner.config.jpeg_quality) for face in aligned.faces]


def examples_from_tfrecord(path: str, max_clips: Optional[int] = None) -> list:
    """The first `max_clips` serialised clips (all when None) of a TFRecord file.

    Raises:
        ValueError: the file is missing, not a TFRecord, empty, or holds a record that is not a
            clip of the project's schema (naming the file and record).
    """
    records = tf.data.TFRecordDataset(path)
    if max_clips is not None:
        records = records.take(max_clips)
    try:
        examples = [record.numpy() for record in records]
    except tf.errors.NotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except tf.errors.DataLossError as error:
        raise ValueError(f"{path} is not a TFRecord file: {error.message}") from None
    if not examples:
        raise ValueError(f"{path}: holds no records")
    for index, example in enumerate(examples):
        try:
            schema.parse_clip(example)
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(f"{path}: record {index} is not an aligned clip: {error.message}") from None
    return examples


def _to_json(value):
    """Nested lists of numbers / bytes -> JSON values, bytes as {"b64": ...}."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    return value


def _decode_strings(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [_decode_strings(item) for item in value]
    if isinstance(value, dict):
        return {key: _decode_strings(item) for key, item in value.items()}
    return value


def _serving_apis():
    """(predict_pb2, prediction_service_pb2_grpc) of tensorflow-serving-api, imported on demand:
    it is an optional extra, and only gRPC needs it."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as error:
        raise ImportError(f"{SERVING_EXTRA_HINT} ({error})") from error
    return predict_pb2, prediction_service_pb2_grpc


def build_request(
    paths: Sequence[str], max_clips: int = 1, max_frames: Optional[int] = 32, landmarks: int = 68, upsample: int = 1
) -> ServingRequest:
    """The request for `paths`: ONE .tfrecord file of aligned clips (its first `max_clips`, for
    the tf_example signature), or videos / frame folders (faces aligned here with dlib's
    `landmarks`-point predictor and `upsample`, at most `max_frames` per video, for the
    encoded_frames signature).

    Raises:
        ValueError: a .tfrecord mixed with other inputs, or a bad input (naming it).
    """
    tfrecords = [path for path in paths if path.endswith(".tfrecord")]
    if tfrecords:
        if len(paths) != 1:
            raise ValueError(f"--input: give one .tfrecord file or only videos, not {list(paths)}")
        return tf_example_request(examples_from_tfrecord(paths[0], max_clips))
    aligner = FaceAligner(AlignmentConfig(landmarks=landmarks, upsample=upsample))
    return encoded_frames_request([clip_jpegs_from_video(path, aligner, max_frames) for path in paths])

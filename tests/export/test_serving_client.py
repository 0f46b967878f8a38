"""Tests of keras_emotion.inference.serving_client and scripts/serving_client.py: REST bodies and gRPC requests that the exported SavedModel
answers with the Keras model's outputs, sending them, and its errors."""

import http.server
import json
import pathlib
import subprocess
import sys
import threading
from concurrent import futures

import numpy as np
import pytest
import tensorflow as tf
from serving_reference import CLASS_NAMES, assert_outputs_match, decode_rest_body, pipeline_features

from keras_emotion import testing
from keras_emotion.data import schema
from keras_emotion.data.faces import AlignmentConfig, FaceAligner
from keras_emotion.inference import serving_client as client

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CLIENT_PATH = REPO_ROOT / "scripts" / "serving_client.py"



def answer_arrays(outputs: dict) -> dict:
    """Outputs of a JSON / gRPC answer -> arrays as the signatures return them (labels as bytes)."""
    arrays = {name: np.array(value) for name, value in outputs.items()}
    arrays["label"] = np.array([label.encode() for label in outputs["label"]], dtype=object)
    return arrays


def json_outputs(outputs: dict) -> dict:
    """Signature outputs -> the JSON values TF Serving answers with (strings decoded)."""
    values = {name: value.tolist() for name, value in outputs.items()}
    values["label"] = [label.decode() for label in values["label"]]
    return values


@pytest.fixture(scope="module")
def ck48_examples(ck48_shard) -> list:
    return client.examples_from_tfrecord(ck48_shard)


@pytest.mark.parametrize("rest_format", ["instances", "inputs"])
def test_rest_body_of_tfrecord_clips_gives_the_keras_outputs(ck48_examples, ck48_reference, call_signature, rest_format):
    body = client.rest_body(client.tf_example_request(ck48_examples), rest_format)
    body = json.loads(json.dumps(body))  # what travels
    if rest_format == "instances":
        assert len(body["instances"]) == 3 and set(body["instances"][0]["examples"]) == {"b64"}
    signature, inputs = decode_rest_body(body)
    assert signature == "tf_example" and inputs["examples"].shape == (3,)
    assert_outputs_match(call_signature(signature, inputs), ck48_reference, rest_format)


def test_rest_body_of_videos_gives_the_keras_outputs(write_avi, call_signature, keras_outputs, tmp_path):
    from skimage import data as skimage_data

    astronaut = skimage_data.astronaut()
    frames = [astronaut, np.roll(astronaut, (6, -9), axis=(0, 1)), np.roll(astronaut, (-8, 5), axis=(0, 1))]
    video_path = tmp_path / "astronaut.avi"
    write_avi(video_path, frames)
    aligner = FaceAligner(AlignmentConfig(upsample=0, cnn_fallback=False))

    jpegs = client.clip_jpegs_from_video(str(video_path), aligner, max_frames=2)
    assert len(jpegs) == 2
    assert tf.io.decode_jpeg(jpegs[0]).shape == (256, 256, 3)
    request = client.encoded_frames_request([jpegs, jpegs[:1]])
    assert request.inputs["frames"].shape == (2, 2) and request.inputs["frames"][1, 1] == b""
    signature, inputs = decode_rest_body(json.loads(json.dumps(client.rest_body(request, "inputs"))))
    assert signature == "encoded_frames"

    clips = [
        schema.AlignedClip(
            clip_id=f"clip{index}", label=0, label_name=CLASS_NAMES[0], source=str(video_path), subject="",
            split="test", fps=10.0, frames_jpeg=clip_jpegs, detected=np.ones(len(clip_jpegs), bool),
            landmarks=np.zeros((len(clip_jpegs), 0, 2), np.float32),
        )
        for index, clip_jpegs in enumerate([jpegs, jpegs[:1]])
    ]
    (shard,) = testing.write_shards(clips, str(tmp_path / "clips"), split="test")
    reference = keras_outputs(pipeline_features(shard))
    assert_outputs_match(call_signature(signature, inputs), reference, "video")


def test_grpc_request_round_trip(ck48_examples, ck48_reference, call_signature):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    proto = client.grpc_request(client.tf_example_request(ck48_examples), "emotion", version=1)
    assert (proto.model_spec.name, proto.model_spec.version.value, proto.model_spec.signature_name) == (
        "emotion", 1, "tf_example",
    )

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        """Answers like TF Serving, with the export loaded in this process."""

        def Predict(self, request, context):
            inputs = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
            response = predict_pb2.PredictResponse()
            for name, value in call_signature(request.model_spec.signature_name, inputs).items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(), server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    try:
        answer = client.send_grpc(f"localhost:{port}", proto, timeout=60)
    finally:
        server.stop(0)
    assert_outputs_match(answer_arrays(answer["outputs"]), ck48_reference, "grpc")


def test_send_rest_posts_to_the_model_and_reports_server_errors(ck48_examples, ck48_reference, call_signature):
    class Handler(http.server.BaseHTTPRequestHandler):
        """TF Serving's predict URL and columnar answer; any other model is not found."""

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v1/models/emotion/versions/1:predict":
                status, answer = 200, {"outputs": json_outputs(call_signature(*decode_rest_body(body)))}
            else:
                status, answer = 404, {"error": f"Servable not found for request: {self.path}"}
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("localhost", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://localhost:{server.server_address[1]}/"
    body = client.rest_body(client.tf_example_request(ck48_examples), "inputs")
    try:
        answer = client.send_rest(url, "emotion", body, version=1)
        with pytest.raises(RuntimeError, match=r"/v1/models/other:predict: HTTP 404: .*Servable not found"):
            client.send_rest(url, "other", body)
    finally:
        server.shutdown()
        thread.join()
    assert_outputs_match(answer_arrays(answer["outputs"]), ck48_reference, "rest")


def test_grpc_without_the_serving_api_says_how_to_install_it(ck48_examples, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError, match=r"tensorflow-serving-api.*keras_emotion\[serving\]"):
        client.grpc_request(client.tf_example_request(ck48_examples), "emotion")


def test_bad_inputs_are_named(tmp_path, ck48_shard):
    not_a_record = tmp_path / "notes.tfrecord"
    not_a_record.write_bytes(b"plain text, not a TFRecord")
    with pytest.raises(ValueError, match=f"{not_a_record} is not a TFRecord file"):
        client.examples_from_tfrecord(str(not_a_record))
    with pytest.raises(ValueError, match="missing.tfrecord: no such file"):
        client.examples_from_tfrecord(str(tmp_path / "missing.tfrecord"))
    with pytest.raises(ValueError, match="one .tfrecord file or only videos"):
        client.build_request([ck48_shard, "clip.avi"])
    with pytest.raises(ValueError, match=r"clip lengths \[2, 0\]"):
        client.encoded_frames_request([[b"a", b"b"], []])


def test_dry_run_prints_the_rest_body(ck48_shard, ck48_examples):
    command = [
        sys.executable, str(CLIENT_PATH), f"--input={ck48_shard}", "--max_clips=2", "--format=inputs", "--dry_run",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = client.rest_body(client.tf_example_request(ck48_examples[:2]), "inputs")
    assert json.loads(completed.stdout) == expected

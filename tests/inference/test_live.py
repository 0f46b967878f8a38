"""Live input: a video served over HTTP on 127.0.0.1, paced in real time, read as a stream by
`predict`; windows come out as JSON lines while it runs; Ctrl-C and a dropped stream lose nothing."""

import http.server
import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from keras_emotion.data.video import InputError, is_stream, iter_frames
from keras_emotion.inference.live import LiveDisplay, stop_on_signals

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FPS = 10.0
FRAMES = 120


@pytest.fixture(scope="module")
def happy_face_video(ck48_dir, tmp_path_factory, write_avi):
    """120 frames (12 s at 10 fps) of a CK+48 sequence going from neutral to happy and back, twice."""
    subject = sorted(os.listdir(os.path.join(ck48_dir, "happy")))[:3]
    faces = [cv2.imread(os.path.join(ck48_dir, "happy", name), cv2.IMREAD_GRAYSCALE) for name in subject]
    frames = []
    for index in range(FRAMES):
        canvas = np.full((240, 320, 3), 90, np.uint8)
        phase = (index // 10) % 6  # 0 1 2 2 1 0: neutral -> happy -> neutral, a second per frame
        face = faces[phase if phase < 3 else 5 - phase]
        canvas[40:200, 80:240] = cv2.resize(face, (160, 160), interpolation=cv2.INTER_CUBIC)[:, :, None]
        frames.append(canvas)
    path = tmp_path_factory.mktemp("live") / "happy.avi"
    write_avi(path, frames, fps=FPS)
    return path.read_bytes()


class PacedVideoServer:
    """Serves one video's bytes over HTTP on 127.0.0.1 in FRAMES chunks, one every 1/FPS s
    (the pace of a live camera); `drop_after` chunks, then closes the connection."""

    def __init__(self, data: bytes, drop_after=None):
        chunk = len(data) // FRAMES + 1
        chunks = [data[start : start + chunk] for start in range(0, len(data), chunk)][:drop_after]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.end_headers()
                try:
                    for piece in chunks:
                        self.wfile.write(piece)
                        self.wfile.flush()
                        time.sleep(1 / FPS)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/camera.avi"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _start_predict(url, *arguments):
    command = [sys.executable, str(REPO_ROOT / "scripts" / "predict.py"), f"--input={url}", "--upsample=1", *arguments]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _lines(stream) -> queue.Queue:
    """The lines of `stream` as they come, read by a thread."""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def test_inputs_that_are_live():
    assert is_stream("0") and is_stream("rtsp://camera/1") and is_stream("http://127.0.0.1:8000/a.mjpg")
    assert not is_stream("video.mp4") and not is_stream("/data/0/video.mp4") and not is_stream("folder")
    with pytest.raises(InputError, match=r"^http://127\.0\.0\.1:9/none: cannot open stream or camera$"):
        next(iter_frames("http://127.0.0.1:9/none"))


def test_windows_come_as_json_lines_while_the_stream_runs_and_ctrl_c_writes_everything(happy_face_video, tmp_path):
    server = PacedVideoServer(happy_face_video)
    process = _start_predict(server.url, f"--output={tmp_path / 'prediction.json'}", f"--csv={tmp_path / 'csv'}")
    try:
        lines, windows = _lines(process.stdout), []
        while len(windows) < 2:
            windows.append(json.loads(lines.get(timeout=120)))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        server.close()
    assert process.returncode == 0, stderr[-2000:]
    assert "predict: stopping; finishing the tracks so far and writing them (Ctrl-C again to abort)" in stderr
    prediction = json.loads((tmp_path / "prediction.json").read_text())
    assert prediction["interrupted"] is True and prediction["source"] == server.url
    assert 16 <= prediction["stats"]["frames_read"] < FRAMES  # stopped while the stream ran
    assert [track["label"] for track in prediction["tracks"]] == ["happy"]
    streamed = [(w["first_frame"], w["last_frame"], w["label"]) for w in windows]
    written = [(w["first_frame"], w["last_frame"], w["label"]) for w in prediction["tracks"][0]["windows"]]
    assert written[: len(streamed)] == streamed  # the lines are the windows, as they came
    assert windows[0]["track"] == 0 and windows[0]["segment"] == 0
    assert sorted(os.listdir(tmp_path / "csv")) == ["frames.csv", "tracks.csv", "windows.csv"]
    assert "(stopped)" in stderr


def test_a_stream_that_drops_ends_the_prediction_with_what_came(happy_face_video, tmp_path):
    server = PacedVideoServer(happy_face_video, drop_after=60)
    process = _start_predict(server.url, f"--output={tmp_path / 'prediction.json'}", f"--jsonl={tmp_path / 'w.jsonl'}")
    try:
        stdout, stderr = process.communicate(timeout=180)
    finally:
        process.kill()
        server.close()
    assert process.returncode == 0, stderr[-2000:]
    prediction = json.loads((tmp_path / "prediction.json").read_text())
    assert prediction["interrupted"] is False and 30 < prediction["stats"]["frames_read"] < FRAMES
    assert "frames read (the stream ended)" in stdout
    lines = [json.loads(line) for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert [(w["first_frame"], w["label"]) for w in lines] == [
        (w["first_frame"], w["label"]) for w in prediction["tracks"][0]["windows"]
    ]


def test_a_second_signal_interrupts_at_once_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT)
    messages = []

    class Messages:
        def write(self, text):
            messages.append(text)

        def flush(self):
            pass

    with stop_on_signals("stopping", Messages()) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5) and messages == ["stopping\n"]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before


def test_display_without_a_gui_says_so_once_and_goes_on():
    warnings = []

    class Warnings:
        def write(self, text):
            warnings.append(text)

    display = LiveDisplay(["happy", "sad"], warn=Warnings())
    display.on_window({"track": 0, "label": "happy", "probabilities": {"happy": 0.9, "sad": 0.1}})
    frame = np.zeros((100, 100, 3), np.uint8)
    for index in range(3):
        display.on_frame(index, frame, {0: [10.0, 10.0, 60.0, 60.0]})
    if display.enabled:  # an OpenCV with a GUI and a display showed the frames
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith("--display: cannot open a window here (")

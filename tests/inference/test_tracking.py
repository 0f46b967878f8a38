"""Faces followed across frames and windows cut from a stream (inference.tracking)."""

import numpy as np
import pytest

from keras_emotion.inference.tracking import FaceTracker, SlidingWindows


def test_sliding_windows_cover_a_long_stream():
    windows, stride, length = SlidingWindows(16, 5), 5, 1003
    emitted, most_held = [], 0
    for index in range(length):
        window = windows.push(index, f"face {index}")
        most_held = max(most_held, len(windows))
        if window is not None:
            emitted.append(window)
    emitted.append(windows.finish())
    assert windows.finish() is None
    assert most_held == 16
    starts = [window.frame_indices[0] for window in emitted]
    assert starts[:-1] == list(range(0, length - 16 + 1, stride))
    assert emitted[-1].frame_indices == list(range(length - 16, length))
    for window in emitted:
        assert window.frame_indices == list(range(window.frame_indices[0], window.frame_indices[0] + 16))
        assert window.items == [f"face {index}" for index in window.frame_indices]
    covered = {index for window in emitted for index in window.frame_indices}
    assert covered == set(range(length))


def test_a_stream_shorter_than_a_window_gives_one_window():
    windows = SlidingWindows(8, 4)
    assert all(windows.push(index, index) is None for index in range(5))
    assert windows.finish().frame_indices == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="stride <= window"):
        SlidingWindows(4, 5)


def test_tracker_follows_boxes_by_overlap_then_centre_and_ends_lost_tracks():
    tracker = FaceTracker(iou_threshold=0.3, max_centre_distance=0.5, max_missed=2)
    left, right = np.array([0.0, 0, 100, 100]), np.array([300.0, 0, 400, 100])
    assert tracker.update([left, right]) == ([0, 1], [])
    # Listed in the other order and moved a little: matched by overlap.
    assert tracker.update([right + 10, left + 5]) == ([1, 0], [])
    # The left face shrinks to a box of IoU 0.16 but its centre moved 0.07 widths: still track 0.
    far = np.array([30.0, 30, 70, 70])
    assert tracker.update([far]) == ([0], [])
    assert tracker.update([far]) == ([0], [])
    assert tracker.update([far]) == ([0], [1])  # track 1 missed 3 > 2 frames
    assert tracker.update([right]) == ([2], [])  # a face where track 1 was is a new track
    assert tracker.live_tracks() == [0, 2]

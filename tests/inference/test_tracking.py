"""Faces followed across frames and windows cut from a stream (inference.tracking)."""

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from keras_emotion.inference.predictor import PredictConfig
from keras_emotion.inference.tracking import FaceTracker, SlidingWindows, appearance_change, follow_box


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


def test_follow_box_moves_and_scales_with_the_landmarks():
    rng = np.random.default_rng(0)
    previous = rng.uniform(100, 200, (68, 2))
    box = np.array([90.0, 80, 210, 220])
    # The face moved by (+30, -12) and grew 1.5 times about its landmarks' centroid.
    centre = previous.mean(axis=0)
    moved = (previous - centre) * 1.5 + centre + [30, -12]

    followed = follow_box(box, previous, moved)

    expected = ((box.reshape(2, 2) - centre) * 1.5 + centre + [30, -12]).reshape(4)
    np.testing.assert_allclose(followed, expected, atol=1e-9)
    np.testing.assert_allclose(follow_box(box, previous, previous), box, atol=1e-9)


def test_appearance_change_is_the_mean_difference_of_8x8_block_means_of_gray():
    astronaut = skimage_data.astronaut()[:256, 128:384]  # her face
    coffee = cv2.resize(skimage_data.coffee(), (256, 256), interpolation=cv2.INTER_AREA)

    def block_means(image):
        gray = image.astype(np.float64) @ [0.299, 0.587, 0.114]
        return gray.reshape(32, 8, 32, 8).mean(axis=(1, 3))

    expected = np.abs(block_means(astronaut) - block_means(coffee)).mean()
    assert appearance_change(astronaut, coffee) == pytest.approx(expected, abs=0.6)
    assert appearance_change(astronaut, astronaut) == 0
    assert appearance_change(astronaut, np.roll(astronaut, 2, axis=1)) < 10  # the same face, moved a little
    assert appearance_change(astronaut, coffee) > PredictConfig().max_appearance_change  # something else


def test_tracker_keeps_followed_tracks_and_counts_the_others_missed():
    tracker = FaceTracker(max_missed=1)
    (first, second), _ = tracker.update([np.array([0.0, 0, 10, 10]), np.array([50.0, 0, 60, 10])])
    assert tracker.update_followed({first: np.array([1.0, 0, 11, 10])}) == []
    assert tracker.update_followed({first: np.array([2.0, 0, 12, 10])}) == [second]
    assert tracker.live_tracks() == [first]
    # The followed box is what the next detection is matched with.
    assert tracker.update([np.array([3.0, 0, 13, 10])])[0] == [first]
    with pytest.raises(ValueError, match=r"followed tracks \[7\] are not live"):
        tracker.update_followed({7: np.zeros(4)})

"""Faces followed across the frames of a video (`FaceTracker`), a face's box moved with its
landmarks between detections (`follow_box`, `appearance_change`), and each track's stream of
aligned faces cut into overlapping windows (`SlidingWindows`)."""

from __future__ import annotations

import collections
import dataclasses
from typing import Optional, Sequence

import cv2
import numpy as np

from keras_emotion.data.faces import box_overlaps


@dataclasses.dataclass
class Window:
    """A window of consecutive frames of one track.

    Attributes:
        frame_indices: T video frame indices (T <= W).
        items: the T items pushed with them (aligned faces).
    """

    frame_indices: list
    items: list


class SlidingWindows:
    """Cuts a stream of frames into windows of `window` frames, one every `stride` frames.

    Holds at most `window` items. A window is complete when `window` frames are held and
    `stride` frames arrived since the previous one (the first one after `window` frames);
    `finish` returns the last frames if some arrived after the last window (or if the stream
    was shorter than one window). Every pushed frame is in at least one window, windows
    start every `stride` frames, and the last window ends at the last frame.
    """

    def __init__(self, window: int, stride: int):
        if window < 1 or not 1 <= stride <= window:
            raise ValueError(f"need window >= 1 and 1 <= stride <= window, got window={window}, stride={stride}")
        self.window, self.stride = window, stride
        self._buffer = collections.deque(maxlen=window)
        self._since_last = 0

    def __len__(self) -> int:
        return len(self._buffer)

    def push(self, frame_index: int, item) -> Optional[Window]:
        """Adds one frame; returns the window it completes, if any."""
        self._buffer.append((frame_index, item))
        self._since_last += 1
        if len(self._buffer) == self.window and self._since_last >= self.stride:
            return self._take()
        return None

    def finish(self) -> Optional[Window]:
        """The last window (the last up to `window` frames) when frames arrived after the last one."""
        return self._take() if self._since_last > 0 else None

    def _take(self) -> Window:
        self._since_last = 0
        indices, items = zip(*self._buffer)
        return Window(list(indices), list(items))


class FaceTracker:
    """Associates the faces detected in successive frames into tracks.

    Each frame, detections are matched to the live tracks greedily: first the pairs of
    largest box overlap (IoU >= iou_threshold), then among the rest the pairs of nearest
    centres (closer than max_centre_distance times the track's box width). Unmatched
    detections start new tracks; a track unmatched for more than `max_missed` frames ends.
    """

    def __init__(self, iou_threshold: float = 0.3, max_centre_distance: float = 0.5, max_missed: int = 10):
        self.iou_threshold, self.max_centre_distance, self.max_missed = iou_threshold, max_centre_distance, max_missed
        self._boxes = {}  # live track id -> (4,) last box
        self._missed = {}  # live track id -> frames since its last detection
        self._next_id = 0

    def update(self, boxes: Sequence[np.ndarray]) -> tuple[list, list]:
        """Feeds the (4,) [left, top, right, bottom] boxes of one frame.

        Returns:
            (track_ids, ended): the track id of each box (in order), and the ids of the
            tracks that ended with this frame (missed more than max_missed frames).
        """
        track_ids = [None] * len(boxes)
        live = list(self._boxes)
        if live and len(boxes):
            boxes_array = np.asarray(boxes, np.float64)
            overlaps = np.stack([box_overlaps(boxes_array, self._boxes[track]) for track in live], axis=1)
            self._match(track_ids, live, overlaps, lambda value: value >= self.iou_threshold, largest=True)
            distances = np.stack([self._centre_distances(boxes_array, self._boxes[track]) for track in live], axis=1)
            self._match(track_ids, live, distances, lambda value: value < self.max_centre_distance, largest=False)
        for index, box in enumerate(boxes):
            if track_ids[index] is None:
                track_ids[index] = self._next_id
                self._next_id += 1
            self._boxes[track_ids[index]] = np.asarray(box, np.float64)
            self._missed[track_ids[index]] = 0
        ended = []
        for track in live:
            if track not in track_ids:
                self._missed[track] += 1
                if self._missed[track] > self.max_missed:
                    ended.append(track)
                    del self._boxes[track], self._missed[track]
        return track_ids, ended

    def update_followed(self, boxes_by_track: dict) -> list:
        """Feeds a frame without detection: the (4,) boxes of the tracks followed into it
        (by id). The other live tracks count the frame as missed.

        Returns:
            The ids of the tracks that ended with this frame (missed more than max_missed frames).
        """
        unknown = set(boxes_by_track) - set(self._boxes)
        if unknown:
            raise ValueError(f"followed tracks {sorted(unknown)} are not live")
        ended = []
        for track in list(self._boxes):
            if track in boxes_by_track:
                self._boxes[track] = np.asarray(boxes_by_track[track], np.float64)
                self._missed[track] = 0
                continue
            self._missed[track] += 1
            if self._missed[track] > self.max_missed:
                ended.append(track)
                del self._boxes[track], self._missed[track]
        return ended

    def live_tracks(self) -> list:
        """Ids of the tracks that have not ended."""
        return list(self._boxes)

    @staticmethod
    def _centre_distances(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Distances of the (N, 4) boxes' centres to the (4,) box's centre, in widths of `box`: (N,)."""
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        return np.linalg.norm(centres - (box[:2] + box[2:]) / 2, axis=1) / max(box[2] - box[0], 1.0)

    @staticmethod
    def _match(track_ids: list, live: list, scores: np.ndarray, acceptable, largest: bool) -> None:
        """Greedy matching on the (boxes, live tracks) `scores`, best pair first, among
        unmatched boxes and tracks whose score is `acceptable`; fills `track_ids`."""
        taken = {track for track in track_ids if track is not None}
        order = np.argsort(-scores if largest else scores, axis=None, kind="stable")
        for box_index, track_index in zip(*np.unravel_index(order, scores.shape)):
            track = live[track_index]
            if track_ids[box_index] is None and track not in taken and acceptable(scores[box_index, track_index]):
                track_ids[box_index] = track
                taken.add(track)


def follow_box(box: np.ndarray, previous_landmarks: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Moves a face's (4,) [left, top, right, bottom] box with its landmarks.

    The box is shifted by the move of the landmarks' centroid and scaled about it by the
    change of their RMS distance to the centroid, so it keeps the place and size relative to
    the landmarks that the detector gave it.

    Args:
        box: (4,) the box that `previous_landmarks` were fitted in.
        previous_landmarks, landmarks: (K, 2) the face's landmarks then and now.

    Returns:
        float64 (4,) the box for `landmarks`.
    """
    previous_centre, centre = previous_landmarks.mean(axis=0), landmarks.mean(axis=0)
    previous_spread = np.sqrt(np.mean(np.sum((previous_landmarks - previous_centre) ** 2, axis=1)))
    spread = np.sqrt(np.mean(np.sum((landmarks - centre) ** 2, axis=1)))
    scale = spread / max(previous_spread, 1e-6)
    corners = np.asarray(box, np.float64).reshape(2, 2)
    return ((corners - previous_centre) * scale + centre).reshape(4)


APPEARANCE_SIDE = 32  # aligned faces are compared at this size, in gray


def appearance_change(previous_face: np.ndarray, face: np.ndarray) -> float:
    """Mean absolute difference, in 0..255 gray levels, between two uint8 (S, S, 3) aligned
    faces shrunk to APPEARANCE_SIDE pixels: small while the same face is followed, large
    when the landmarks were fitted on something else (a cut, an occlusion, a lost face)."""
    small = [
        cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (APPEARANCE_SIDE, APPEARANCE_SIDE),
                   interpolation=cv2.INTER_AREA).astype(np.float32)
        for image in (previous_face, face)
    ]
    return float(np.mean(np.abs(small[0] - small[1])))

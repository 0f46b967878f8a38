"""Constants of the inference tests: how the synthetic demo video is aligned, its model's classes."""

from keras_emotion.data.faces import AlignmentConfig

ALIGNMENT = AlignmentConfig(upsample=0, cnn_fallback=False)  # the demo face is ~130 px wide
CLASS_NAMES = ["anger", "happy", "sadness", "surprise"]

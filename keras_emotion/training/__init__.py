"""Training of the video emotion models (TensorFlow backend).

    config.TrainConfig            everything a run needs (model, data, optimisation, output)
    task.train(config)            -> (model, history): builds, fits, checkpoints, saves
    task.save_trained_model / task.load_trained_model -> TrainedModel (model + how to feed it)
    optimizers.build_optimizer    SGD + warm restarts, one learning rate per parameter group
    distribution.get_strategy     MirroredStrategy, or MultiWorkerMirroredStrategy with TF_CONFIG

Nothing is imported here, so that light modules of this package (metrics) stay light.
"""

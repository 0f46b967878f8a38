"""Training of the video emotion models (TensorFlow backend).

    config.TrainConfig            everything a run needs (model, data, optimisation, output)
    config.train_config(...)      a TrainConfig from a JSON file and/or single options (flags)
    task.train(config)            -> (model, history): builds, fits, checkpoints, saves
    optimizers.two_rate_sgd       SGD + warm restarts, one learning rate per parameter group
    optimizers.warmup_cosine_adamw   AdamW (or LAMB for the backbone) with warm-up and cosine decay
                                  (backbone pre-training)
    pretrain.pretrain(config)     fine-tunes a frame backbone on FER2013 (+ FER+, ExpW, SFEW)
    pretrain.average_backbone_weights   the mean of fine-tuned backbones' weights (a model soup)
    distribution.get_strategy     MirroredStrategy, or MultiWorkerMirroredStrategy with TF_CONFIG

Nothing is imported here, so that light modules of this package (metrics) stay light.
"""

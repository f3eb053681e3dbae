"""Training of the SSD detector: the built-in algorithm's hyperparameters and metric log format, and the
``local`` backend that executes the same CreateTrainingJob / CreateHyperParameterTuningJob requests here.

Nothing heavy is imported at package level: MXNet and GluonCV load inside the trainer's child process.
"""

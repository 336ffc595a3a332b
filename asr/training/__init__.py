"""Training, one concern a module:

- trainer.py: `Trainer` (data, model, optimizer; epochs of steps plus validation; checkpoints
  and exact resume) and `train`;
- step.py: one optimizer step that survives faults (non-finite values, out of memory, several
  processes), as functions of the model, optimizer, loss scaler and process group;
- schedule.py: the learning-rate schedule and the run's budget (epochs, steps, minutes);
- averaging.py: the weights of the last validations and their mean;
- signals.py: SIGINT/SIGTERM stop a run at the end of a step (`stop_on_signals`);
- utterances.py: the training and dev manifests, checked and normalised.

asr.train re-exports the public names.
"""

"""Experiment trackers (`logger=`): TensorBoard, CSV, MLflow, Weights & Biases, several at once. Each is a
thin config over Lightning's own logger (`config.py`: the options; `build.py`: the TRACKERS registry), with
what Lightning leaves to the user done here: MLflow's store chosen so a current MLflow accepts it, a tracker
run that resumes with the training run, a tracker that goes away never costing the run its own files."""

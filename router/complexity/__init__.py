"""The complexity classifier behind `model: "auto"`: a labelled set of gateway prompts (data/), features shared by
training and routing (features.py), a versioned artifact the router loads (model.py, artifacts/), and the training
and evaluation that `fleet router train` runs (train.py)."""

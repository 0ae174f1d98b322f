"""The complexity classifier behind `model: "auto"`: features shared by training and routing (features.py, with
tokens.py's WordPiece and fast.py's flat scorer on the hot path), and the versioned artifact the router loads
(model.py, artifacts/). The training and the labelled set are not part of the installed package: training/complexity.py
and corpora/complexity/ in a checkout (`fleet router train`)."""

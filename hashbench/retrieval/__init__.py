"""The retrieval mathematics: codes, metrics, the PGD engine, code banks, anchors, prototypes and training loops."""

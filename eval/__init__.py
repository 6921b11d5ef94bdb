"""Evaluation: the gold question set (:mod:`eval.gold`) and answer matching (:mod:`eval.match`)."""

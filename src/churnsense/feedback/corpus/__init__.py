"""Feedback data written for churnsense: the hand-written dev set (evaluation only) and the training corpus."""

"""The feedback slice: the multilingual encoder build, the feedback model, its training, export and serving."""

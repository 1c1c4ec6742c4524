""""For you": serving, nightly training, evaluation and the event data they learn from."""

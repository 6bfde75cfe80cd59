"""SQuAD, classifier and pretraining: three Tasks of one shape (tasks/task.py)."""

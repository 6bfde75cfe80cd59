"""Corpus to pretraining records: cleaning, vocab, masked-LM instances (locally or on Beam)."""

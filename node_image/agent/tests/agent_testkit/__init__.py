"""Shared test kit: the real llama.cpp launcher, a tiny model writer, fakes of what cannot run here."""

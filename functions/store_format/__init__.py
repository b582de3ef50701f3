"""Formats the model store's JuiceFS volume from inside its VPC (see handler.py)."""

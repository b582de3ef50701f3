"""Marks node_image as a package so the agent's tests import as node_image.agent.tests.*, apart from the
root tests/ package, under pytest's importlib mode. Nothing here ships: the wheel holds fleet_agent only."""

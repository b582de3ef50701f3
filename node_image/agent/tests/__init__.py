"""The agent's tests; a package so the test kit imports relatively (pyright resolves it) and pytest
names the modules node_image.agent.tests.*."""

"""See node_image/__init__.py: a package marker for the test modules' import names, nothing more."""

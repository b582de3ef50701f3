"""Creates the gateway's own database role (never the master user), run once per deploy by Pulumi."""

"""The gateway task's region-health sidecar: what Route53 probes to decide whether a region can serve."""

"""The standby region's failover prober: watches the primary region from the standby and promotes the
Aurora global database only when independent database-side signals agree (see decision.py)."""

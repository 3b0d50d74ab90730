"""Test helpers shared by the unit and integration tiers: processes, brokers, subscribers."""

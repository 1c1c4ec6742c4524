"""Shoppers' events and what is released from them: tracking, bounds, DP releases, erasure."""

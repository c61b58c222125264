"""The public leaderboard as evidence: what its scores say about the test (probes, noise)."""

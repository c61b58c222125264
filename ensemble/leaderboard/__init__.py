"""The public leaderboard as evidence: its noise (`noise`), and what probe scores reveal of the test (`probe`)."""

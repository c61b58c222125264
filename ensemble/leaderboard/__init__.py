"""The leaderboard: its noise (`noise`), and what public scores reveal (`probe`)."""

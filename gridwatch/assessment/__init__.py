"""The command centre's figures over time and space: roll-ups by street and district, the scorecard."""

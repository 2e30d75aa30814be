"""The reliability suite (issue 9): bad inputs, bad artifacts, faulty plugins, security."""

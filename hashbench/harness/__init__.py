"""The harness: grids and profiles, the stage plan, its execution, the store, costs and records."""

"""One module per benchmark scenario; bench.run calls each one's run(quick)."""

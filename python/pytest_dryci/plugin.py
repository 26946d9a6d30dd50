"""pytest entry point: registers options; the work happens only with --dryci."""

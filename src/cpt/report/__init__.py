"""Step 5, the report: tables, plots, cost and the summary of one experiment (cpt.report.build)."""

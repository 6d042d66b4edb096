"""Reports: what a run writes about itself besides checkpoints: metrics.json and the CSVs (`artifacts`),
figures (`figures`, `diagnostics`), Grad-CAM explanations (`explain`) and the corruption evaluation
(`robustness`)."""

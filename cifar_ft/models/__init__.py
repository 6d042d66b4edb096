"""The LightningModule (backbone + fresh head), its parameter groups, LR schedules and metrics."""

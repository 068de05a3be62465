"""The demo TRE: synthetic data (`data`) and the idempotent build of a whole TRE over it (`stack`)."""

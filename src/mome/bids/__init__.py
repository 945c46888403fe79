"""BIDS cohorts: ``mome bids BIDS_ROOT OUT_DIR participant|group`` (inputs: layout; outputs: derivatives)."""

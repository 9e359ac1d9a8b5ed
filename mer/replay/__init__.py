"""The replay buffer (`buffer`): 8-byte references into the token shards (`refs`) or copies, kept and drawn by a
replay policy (`policy` for the interface, one file per policy)."""

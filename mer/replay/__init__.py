"""The replay buffer (`buffer`): 8-byte references into the token shards (`refs`, read back by `reader`) or copies
(`copies`), kept by a replay policy (`policy` for the interface, `policies/` one file per policy, `config` for the
settings) and drawn uniformly by the buffer."""

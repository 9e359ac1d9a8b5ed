"""Several processes and devices: the process group and device choice (`distributed`) and FSDP sharding
(`sharding`)."""

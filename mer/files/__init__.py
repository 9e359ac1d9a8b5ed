"""Files written safely: atomic writes and renames that survive a kill or a full disk, file hashes, and the
fault points the fault-injection suite kills the process at. Imports nothing else of mer."""

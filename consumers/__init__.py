"""Message plumbing: broker topology, job and reply consumers, cancel fan-out, transports."""

"""The local lab: a real API server, containerd pods and the agent on this machine."""

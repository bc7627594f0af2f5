"""Pure cores: parsing, the kernel's and Kubernetes' figures, the algorithms of the lab's
stand-ins (kubelet status, metrics-server, HPA, rollouts). No I/O."""

"""The Kubernetes REST client the lab, its stand-ins and the rehearsal share."""

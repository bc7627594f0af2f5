"""The kopf operator: signals in through a webhook, KernelWhispers and PodBirthCertificates
out, each concluded with severity, insights and recommendations (analysis.py)."""

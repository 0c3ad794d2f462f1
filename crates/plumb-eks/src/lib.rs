//! Amazon EKS integration: IAM authenticator tokens, remote cluster clients, cluster facts.

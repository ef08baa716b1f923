"""A real local Kubernetes control plane (etcd + kube-apiserver) on loopback."""

from .cluster import ClusterError, LocalCluster

__all__ = ["ClusterError", "LocalCluster"]

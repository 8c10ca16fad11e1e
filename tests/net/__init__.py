"""Network-lab tests: roost and the official SDK in network namespaces behind NAT and firewalls."""

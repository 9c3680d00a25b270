"""Asterisk Manager Interface: the sans-I/O codec and the AMI → model normalizer."""
